"""Train one transfer-learning experiment: `python scripts/train.py [group=option ...] [key=value ...]`.

The installed `transferlab train`, reading this checkout's conf/.
"""

from pathlib import Path

from transferlab.commands import train

if __name__ == "__main__":
    train.main(config_path=Path(__file__).resolve().parents[1] / "conf")
