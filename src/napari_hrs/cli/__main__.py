import sys

from napari_hrs.cli import main

sys.exit(main())
