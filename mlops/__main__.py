from mlops.core.platform.cli import main

raise SystemExit(main())
