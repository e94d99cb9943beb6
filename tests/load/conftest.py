import sys
from pathlib import Path

# the deliberately faulty sessions of tests/corpus (importlib import mode)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))
