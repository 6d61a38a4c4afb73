"""The module Dramatiq's CLI imports in each worker process (`callhook worker` runs
`dramatiq workers.process`): dying with Dramatiq's supervisor (callhook/lifecycle.py), JSON
logs, the config from $CALLHOOK_CONFIG, the broker, and the deadline on stopping
(workers/shutdown.py)."""

from __future__ import annotations

import dramatiq

from callhook import logs
from callhook.config import load_config
from callhook.lifecycle import die_with_multiprocessing_parent
from workers.main import build_broker
from workers.shutdown import ShutdownDeadline

die_with_multiprocessing_parent()
logs.configure()
config = load_config()
broker = build_broker(config)
broker.add_middleware(ShutdownDeadline(config.workers.shutdown_timeout_s))
dramatiq.set_broker(broker)
