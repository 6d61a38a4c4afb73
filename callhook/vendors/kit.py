"""A vendor kit: everything that imitates a vendor, beside the vendor declaration.

Production reads a vendor's webhooks and calls its APIs (`callhook.vendors.base.Vendor`).
Everything that plays the vendor's part instead lives in its kit: an example source config
with fresh secrets, realistic calls and the event sequence the vendor sends about each,
deliveries authenticated exactly as the vendor does, and an ASGI app answering its API
with injectable faults. Sandbox mode, `send-test-event`, the tests, the fuzz and chaos
suites and the benchmarks take everything vendor-specific from here, by iterating
`VENDORS` and reading each vendor's `kit`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, SecretStr
from starlette.types import ASGIApp

from callhook.events import Delivery

ConfigT = TypeVar("ConfigT", bound=BaseModel)
ConfigT_contra = TypeVar("ConfigT_contra", bound=BaseModel, contravariant=True)


@dataclass(frozen=True, slots=True)
class SimulatedCall:
    """A call a simulated vendor knows: the Get Call object and the extras' API objects."""

    call_id: str
    call: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Faults:
    """Failures a simulated vendor API injects, for tests and chaos runs."""

    #: answer 404 this many times per call id before the call "exists"
    not_found_first: int = 0
    #: answer 429 to this many requests (then serve normally); `retry_after` header or none
    rate_limited: int = 0
    retry_after: float | None = None
    #: answer 500 to this many requests
    server_errors: int = 0
    #: answer 401 to every request (wrong API key)
    unauthorized: bool = False
    #: seconds to wait before answering each request
    latency_s: float = 0.0


@dataclass
class VendorSimulatorState:
    """The calls a simulated vendor API knows and the faults it injects.

    `calls` maps call id → the Get Call object as the vendor returns it (unwrapped);
    `extras` maps call id → kind ("recordings", "summary", ...) → that API's object.
    `requests` logs every request as (method, path) so tests can count vendor calls.
    """

    api_key: str
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str]] = field(default_factory=list)
    not_found_served: dict[str, int] = field(default_factory=dict)
    #: sandbox mode: an unknown call id is answered with a new `simulated_call` for it
    autocreate: bool = False


def one_scheme(config: ConfigT) -> tuple[ConfigT, ...]:
    """`auth_schemes` for a vendor with a single way of authenticating its deliveries."""
    return (config,)


def headers_as_they_are(
    config: BaseModel, headers: Mapping[str, str], body: bytes, now: float
) -> dict[str, str]:
    """`reauthenticate` for a scheme covering neither the body nor the time (a Basic or
    Bearer credential): the same headers authenticate any body, at any time."""
    return dict(headers)


class MakeCall(Protocol):
    def __call__(self, call_id: str | None, now: float) -> SimulatedCall: ...


class MakeDelivery(Protocol[ConfigT_contra]):
    def __call__(
        self, config: ConfigT_contra, vendor_type: str, call: SimulatedCall, now: float
    ) -> Delivery: ...


class Reauthenticate(Protocol[ConfigT_contra]):
    def __call__(
        self, config: ConfigT_contra, headers: Mapping[str, str], body: bytes, now: float
    ) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class VendorKit(Generic[ConfigT]):
    """One vendor imitated: its example source, calls, deliveries and API."""

    #: every vendor event name `simulate_delivery` can build (one fixture per name in tests)
    simulated_types: tuple[str, ...]
    #: the events the vendor sends about one ordinary answered call, in the order it sends them
    call_sequence: tuple[str, ...]
    #: the event of that sequence that normalises to call.completed
    completed_type: str
    #: the request headers that carry the delivery's authentication
    auth_headers: frozenset[str]
    #: True when the authentication covers a timestamp (stale deliveries are refused)
    timestamped: bool
    #: the source's config narrowed to each authentication scheme the vendor delivers in,
    #: one config per scheme (`simulate_delivery` then authenticates in that scheme)
    auth_schemes: Callable[[ConfigT], tuple[ConfigT, ...]]
    #: fresh random secrets for one source: name → value (the API key under "api_key")
    new_secrets: Callable[[], dict[str, str]]
    #: the `[sources.NAME]` table of a source using those secrets and that API base URL
    example_source: Callable[[Mapping[str, str], str], dict[str, Any]]
    #: a realistic call as the vendor's API returns it, `now` in unix seconds (a new random
    #: id when `call_id` is None)
    simulated_call: MakeCall
    #: a delivery of `vendor_type` about `call`, authenticated as the vendor does it
    simulate_delivery: MakeDelivery[ConfigT]
    #: `headers` (as built by `simulate_delivery`) authenticating `body` at `now` instead,
    #: in the same scheme: how a fuzzer gets a mutated body past authentication
    reauthenticate: Reauthenticate[ConfigT]
    #: an ASGI app answering the vendor's API like the real one, from `state`
    simulator_app: Callable[[VendorSimulatorState], ASGIApp]
    #: real deliveries as the vendor sent them, at least one per simulated type:
    #: `<vendor type>[__<variant>].json`, and its API's answers under `api/`
    fixtures: Path

    def leak_forms(self, config: ConfigT) -> tuple[str, ...]:
        """Every form in which `config`'s secrets could leak into an answer or a log: each
        secret's value (a Standard Webhooks `whsec_` secret with and without its prefix) and
        the credentials of the authentication headers a delivery carries."""
        forms: list[str] = []
        for name in type(config).model_fields:
            value = getattr(config, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                secret = value.get_secret_value()
                forms += [secret, secret.removeprefix("whsec_")]
        call = self.simulated_call(None, now=0.0)
        delivery = self.simulate_delivery(config, self.completed_type, call, now=0.0)
        for header, value in delivery.headers.items():
            scheme, _, credentials = value.partition(" ")
            if header in self.auth_headers and scheme.lower() in ("basic", "bearer"):
                forms.append(credentials)
        return tuple(dict.fromkeys(forms))
