import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # smtp_faults, smtp_harness (importlib import mode)
