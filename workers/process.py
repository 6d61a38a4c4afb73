"""The module Dramatiq's CLI imports in each worker process (`callhook worker` runs
`dramatiq workers.process`): JSON logs, the config from $CALLHOOK_CONFIG, the broker."""

from __future__ import annotations

import dramatiq

from callhook import logs
from callhook.config import load_config
from workers.main import build_broker

logs.configure()
broker = build_broker(load_config())
dramatiq.set_broker(broker)
