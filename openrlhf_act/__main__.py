from openrlhf_act.cli import main

raise SystemExit(main())
