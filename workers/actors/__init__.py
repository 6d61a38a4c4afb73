"""The actors, declared on a broker by `workers.main.declare_actors`."""
