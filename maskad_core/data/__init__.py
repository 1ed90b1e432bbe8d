"""The images: the MVTec AD layout loader (``mvtec``), how a non-square image becomes the model's
square (``geometry``), the per-image brightness and contrast control (``image_norm``), where runs
and data are kept (``paths``) and the generated data set (``synthetic/``). Imports only the method."""
