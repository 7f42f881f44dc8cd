from mlops.core.cli import main

raise SystemExit(main())
