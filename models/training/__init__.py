"""Training and its diagnostics: the loop, the objective, the photos, the probe,
throughput and log plots. Never imported by the encode/decode path."""
