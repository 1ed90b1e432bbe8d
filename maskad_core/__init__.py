"""maskad: the improved masked autoencoder (complementary masking) for multi-class
industrial image anomaly detection (Hu, Xiao, Kang, 2024), as a small tested library."""

__version__ = "0.1.0"
