import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # planted_faults (importlib import mode)
