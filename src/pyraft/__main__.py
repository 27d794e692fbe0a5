from pyraft.cli import main

raise SystemExit(main())
