import sys

from pdeflow.cli import main

sys.exit(main())
