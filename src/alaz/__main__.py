import sys

from alaz.cli import main

sys.exit(main())
