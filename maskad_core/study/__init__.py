"""What the notebooks and the book use: the parameter profiles, the study runner (``runner``:
``maskad study``), editions, the headline over seeds, comparison words, report sentences, figures,
glue, the recipe log and the paper's own numbers. Importing the package imports nothing heavy."""
