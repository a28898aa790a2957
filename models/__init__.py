"""Networks, integer probability tables, the registry of shipped models, and training."""

import warnings

# compressai calls torch.jit.script at import time, which newer torch deprecates
# noisily; it is not ours to fix and would print on every command.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)
