"""The seeded order-flow generator: the venue's matching engine, reduced to a deterministic script.

:class:`OrderFlow` owns every order the simulated venue ever accepted and turns one call of
:meth:`OrderFlow.step` into one :class:`VenueUpdate` (what one stream ``update`` message carries: one or
more executions and/or a cancel reject). It does no I/O, reads no clock and uses only its own seeded
random generator, so the same seed and the same sequence of ``now`` values give the same updates.

Lifecycles (venue-api.md §2.7), with the choices the venue docs leave open:

* resting order: ``NEW`` → zero or more ``PARTIAL_FILL`` → ``FILL`` (fills at the limit price, maker rebate);
* aggressive IOC order: one update with ``NEW``, ``PARTIAL_FILL`` executions at up to three price levels
  (taker fee, ``aggressor`` true) and either ``FILL`` or ``CANCELED`` for the unfilled rest;
* immediate reject: one ``REJECTED`` execution with ``order_reject_reason`` and ``text``;
* cancel: the cancel request moves the order to ``PENDING_CANCEL`` *without* an execution (the
  venue's ExecutionType has no pending member); the pending state shows in snapshots and order
  searches. A later step resolves it as ``CANCELED``, or as a :class:`CancelReject` (the order returns
  to its previous state), or as a ``FILL`` of the rest plus a ``TOO_LATE_TO_CANCEL`` reject in the
  same update;
* replace: the request moves the order to ``PENDING_REPLACE`` (no execution); it resolves as one
  ``REPLACE`` execution on the **same order id** carrying the new ``clord_id``, price and quantity
  (state back to ``NEW``/``PARTIALLY_FILLED``), or as a cancel reject with ``is_replace`` set.
  ``ORDER_STATE_REPLACED`` is never produced;
* expiry: GOOD_TILL_TIME orders whose ``good_till_time`` has passed get ``EXPIRED``;
* unsolicited cancel: ``CANCELED`` with ``unsolicited_cancel_reason``, alone or in the same update as
  a fill of another order of the same account (the "no longer fully funded" rule);
* a second cancel of a pending order gets a ``ALREADY_PENDING`` reject, a cancel of an unknown order an
  ``UNKNOWN_ORDER`` reject.

Fixed point: prices are integers in units of 1/``price_scale`` dollars (one tick is a cent), quantities
in units of 1/``fractional_quantity_scale`` contracts, commissions in units of
1/(``price_scale`` * ``fractional_quantity_scale``) dollars: ``fee = last_px * last_shares * bps /
10 000`` (rounded down), positive for the taker, negative (a rebate) for the maker.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator.clock import from_timestamp, to_timestamp

__all__ = ["TERMINAL_STATES", "CancelRejectEvent", "FlowParams", "OrderFlow", "VenueUpdate", "is_open"]

TERMINAL_STATES: Final = frozenset(
    {
        enums_pb2.ORDER_STATE_FILLED,
        enums_pb2.ORDER_STATE_CANCELED,
        enums_pb2.ORDER_STATE_REJECTED,
        enums_pb2.ORDER_STATE_EXPIRED,
        enums_pb2.ORDER_STATE_REPLACED,
    }
)
_FILLABLE_STATES: Final = frozenset({enums_pb2.ORDER_STATE_NEW, enums_pb2.ORDER_STATE_PARTIALLY_FILLED})
_REJECT_TEXT: Final = {
    enums_pb2.ORD_REJECT_REASON_EXCHANGE_OPTION: "Order would exceed position limit",
    enums_pb2.ORD_REJECT_REASON_UNKNOWN_SYMBOL: "Unknown symbol",
    enums_pb2.ORD_REJECT_REASON_EXCHANGE_CLOSED: "Instrument is not open for trading",
    enums_pb2.ORD_REJECT_REASON_INCORRECT_QUANTITY: "Quantity below minimum",
    enums_pb2.ORD_REJECT_REASON_INVALID_PRICE_INCREMENT: "Price is not a multiple of the tick size",
    enums_pb2.ORD_REJECT_REASON_INCORRECT_ORDER_TYPE: "Order type not supported for this instrument",
    enums_pb2.ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS: "Price outside the instrument's price band",
    enums_pb2.ORD_REJECT_REASON_NO_LIQUIDITY: "No liquidity for market-to-limit order",
}
_UNSOLICITED_TEXT: Final = {
    enums_pb2.UNSOLICITED_CXL_REASON_EXCHANGE_OPTION: "Order no longer fully funded",
    enums_pb2.UNSOLICITED_CXL_REASON_OTHER: "Canceled by exchange operations",
    enums_pb2.UNSOLICITED_CXL_REASON_LOGOUT: "Canceled on logout",
}
_GTT_MIN_S: Final = 5.0
_GTT_MAX_S: Final = 60.0
_TARGET_OPEN_ORDERS: Final = 40


def is_open(order: trading_pb2.Order) -> bool:
    """Tell whether an order is still working (not in a terminal state)."""
    return order.state not in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class FlowParams:
    """What the order flow trades and how its numbers are scaled.

    Attributes:
        accounts: Trading accounts (``firms/<firm>/accounts/<id>``) orders are placed for.
        symbols: Instruments orders are placed on.
        participant: The participant that placed every order.
        price_scale: Price units per dollar (e.g. 1000).
        fractional_quantity_scale: Quantity units per contract (1 or 100).
        id_prefix: Prefix of every order, execution and trade id.
        max_open_orders: Above this many open orders no new orders are placed.
        taker_fee_bps: Fee of an aggressive fill in basis points.
        maker_rebate_bps: Rebate of a resting fill in basis points.
    """

    accounts: tuple[str, ...]
    symbols: tuple[str, ...]
    participant: str = "firms/SIM/users/connector"
    price_scale: int = 1000
    fractional_quantity_scale: int = 100
    id_prefix: str = "SIM"
    max_open_orders: int = 200
    taker_fee_bps: int = 20
    maker_rebate_bps: int = 5


@dataclass(frozen=True, slots=True)
class CancelRejectEvent:
    """A cancel reject plus the order's account and symbol, which the message itself does not carry."""

    reject: trading_pb2.CancelReject
    account: str
    symbol: str


@dataclass(frozen=True, slots=True)
class VenueUpdate:
    """What one ``update`` message carries. The protobuf members are shared: never mutate them."""

    executions: tuple[trading_pb2.Execution, ...] = ()
    cancel_reject: CancelRejectEvent | None = None


@dataclass(frozen=True, slots=True)
class _Pending:
    """A cancel or replace request waiting for the engine."""

    previous_state: enums_pb2.OrderState
    new_clord_id: str
    new_price: int = 0
    new_qty: int = 0


class OrderFlow:
    """A deterministic order-entry and matching script; see the module docstring for the lifecycles."""

    def __init__(self, params: FlowParams, seed: int) -> None:
        if not params.accounts or not params.symbols:
            msg = "the order flow needs at least one account and one symbol"
            raise ValueError(msg)
        self._params = params
        self._rng = random.Random(seed)  # noqa: S311 - simulated market activity, not security
        self._orders: dict[str, trading_pb2.Order] = {}
        self._open: dict[str, None] = {}  # insertion-ordered set, so choices are deterministic
        self._pending: dict[str, _Pending] = {}
        self._counters = {"order": 0, "clord": 0, "execution": 0, "trade": 0}
        self._last_time: datetime | None = None
        self._tick = max(1, params.price_scale // 100)

    @property
    def params(self) -> FlowParams:
        """The flow's parameters."""
        return self._params

    def orders(self) -> Iterable[trading_pb2.Order]:
        """Every order ever accepted or rejected, oldest first (live objects: copy before sharing)."""
        return self._orders.values()

    def open_orders(self) -> list[trading_pb2.Order]:
        """The working orders, oldest first (live objects: copy before sharing)."""
        return [self._orders[order_id] for order_id in self._open]

    def order(self, order_id: str) -> trading_pb2.Order | None:
        """The order with this id, if any (a live object: copy before sharing)."""
        return self._orders.get(order_id)

    # ------------------------------------------------------------------ the step

    def step(self, now: datetime) -> VenueUpdate:
        """Produce the venue's next update.

        Args:
            now: The current time (aware). Transact times never go backwards even if it does.

        Returns:
            The next update; it always carries at least one execution or a cancel reject.
        """
        if self._last_time is not None and now < self._last_time:
            now = self._last_time
        self._last_time = now
        expired = self._expire_due(now)
        if expired is not None:
            return expired
        actions = self._available_actions()
        names = list(actions)
        weights = [actions[name][0] for name in names]
        chosen = self._rng.choices(names, weights=weights)[0]
        return actions[chosen][1](now)

    def _available_actions(self) -> dict[str, tuple[float, Callable[[datetime], VenueUpdate]]]:
        fillable = any(self._orders[oid].state in _FILLABLE_STATES for oid in self._open)
        room = len(self._open) < self._params.max_open_orders
        # Activity on resting orders grows with their number, so the book hovers around a few dozen.
        pressure = min(4.0, len(self._open) / _TARGET_OPEN_ORDERS)
        actions: dict[str, tuple[float, Callable[[datetime], VenueUpdate]]] = {
            "reject_unknown_cancel": (0.5, self._reject_unknown_cancel),
        }
        if room:
            actions["new_resting"] = (30.0, self._new_resting)
            actions["new_aggressive"] = (5.0, self._new_aggressive)
            actions["new_rejected"] = (2.0, self._new_rejected)
        if fillable:
            actions["fill"] = (22.0 * pressure, self._fill_resting)
            actions["cancel_request"] = (5.0 * pressure, self._cancel_request)
            actions["replace_request"] = (3.0 * pressure, self._replace_request)
            actions["unsolicited_cancel"] = (1.0 * pressure, self._unsolicited_cancel)
            actions["fill_and_unfunded_cancel"] = (2.0 * pressure, self._fill_and_unfunded_cancel)
        if self._pending:
            actions["resolve_pending"] = (15.0, self._resolve_pending)
            actions["duplicate_cancel"] = (0.5, self._duplicate_cancel)
        return actions

    # ------------------------------------------------------------------ ids and building blocks

    def _next_id(self, kind: str, letter: str) -> str:
        self._counters[kind] += 1
        return f"{self._params.id_prefix}-{letter}{self._counters[kind]:09d}"

    def _random_qty(self) -> int:
        scale = self._params.fractional_quantity_scale
        contracts = self._rng.randint(1, 500)
        fraction = self._rng.randrange(scale) if scale > 1 and self._rng.random() < 0.3 else 0
        return contracts * scale + fraction

    def _random_price(self) -> int:
        return self._rng.randint(2, 98) * self._tick

    def _new_order(self, now: datetime, *, tif: enums_pb2.TimeInForce) -> trading_pb2.Order:
        params = self._params
        order_id = self._next_id("order", "O")
        qty = self._random_qty()
        order = trading_pb2.Order(
            id=order_id,
            type=enums_pb2.ORDER_TYPE_LIMIT,
            side=self._rng.choice((enums_pb2.SIDE_BUY, enums_pb2.SIDE_SELL)),
            order_qty=qty,
            symbol=self._rng.choice(params.symbols),
            clord_id=self._next_id("clord", "C"),
            time_in_force=tif,
            account=self._rng.choice(params.accounts),
            leaves_qty=qty,
            state=enums_pb2.ORDER_STATE_NEW,
            participant=params.participant,
            submitting_participant=params.participant,
            price=self._random_price(),
            commissions_basis_points=str(params.taker_fee_bps),
            maker_commissions_basis_points=str(-params.maker_rebate_bps),
            order_capacity=enums_pb2.ORDER_CAPACITY_AGENCY,
            manual_order_indicator=enums_pb2.MANUAL_ORDER_INDICATOR_AUTOMATED,
            price_scale=params.price_scale,
            fractional_quantity_scale=params.fractional_quantity_scale,
        )
        stamp = to_timestamp(now)
        order.create_time.CopyFrom(stamp)
        order.insert_time.CopyFrom(stamp)
        order.last_transact_time.CopyFrom(stamp)
        if tif == enums_pb2.TIME_IN_FORCE_GOOD_TILL_TIME:
            lifetime = timedelta(seconds=self._rng.uniform(_GTT_MIN_S, _GTT_MAX_S))
            order.good_till_time.CopyFrom(to_timestamp(now + lifetime))
        self._orders[order_id] = order
        self._open[order_id] = None
        return order

    def _execution(
        self,
        order: trading_pb2.Order,
        exec_type: enums_pb2.ExecutionType,
        now: datetime,
        **fields: object,
    ) -> trading_pb2.Execution:
        """Stamp the order with ``now``, snapshot it into a new execution, and close it if terminal."""
        order.last_transact_time.CopyFrom(to_timestamp(now))
        execution = trading_pb2.Execution(
            id=self._next_id("execution", "E"),
            type=exec_type,
            trace_id=f"trace-{self._counters['execution']:09d}",
            **fields,  # type: ignore[arg-type]
        )
        execution.order.CopyFrom(order)
        execution.transact_time.CopyFrom(to_timestamp(now))
        execution.transact_trade_date.year = now.year
        execution.transact_trade_date.month = now.month
        execution.transact_trade_date.day = now.day
        if not is_open(order):
            self._open.pop(order.id, None)
            self._pending.pop(order.id, None)
        return execution

    def _apply_fill(
        self, order: trading_pb2.Order, qty: int, price: int, now: datetime, *, aggressor: bool
    ) -> trading_pb2.Execution:
        order.cum_qty += qty
        order.leaves_qty -= qty
        order.price_to_quantity_filled[price] += qty
        notional = sum(px * q for px, q in order.price_to_quantity_filled.items())
        order.avg_px = (notional + order.cum_qty // 2) // order.cum_qty
        gross = price * qty
        if aggressor:
            fee = gross * self._params.taker_fee_bps // 10_000
        else:
            fee = -(gross * self._params.maker_rebate_bps // 10_000)
        order.commission_notional_total_collected += fee
        trade_id = self._next_id("trade", "T")
        order.last_trade_id = trade_id
        done = order.leaves_qty == 0
        order.state = enums_pb2.ORDER_STATE_FILLED if done else enums_pb2.ORDER_STATE_PARTIALLY_FILLED
        exec_type = enums_pb2.EXECUTION_TYPE_FILL if done else enums_pb2.EXECUTION_TYPE_PARTIAL_FILL
        return self._execution(
            order,
            exec_type,
            now,
            last_shares=qty,
            last_px=price,
            trade_id=trade_id,
            aggressor=aggressor,
            commission_notional_collected=fee,
        )

    def _cancel(
        self,
        order: trading_pb2.Order,
        now: datetime,
        *,
        reason: enums_pb2.UnsolicitedCxlReason = enums_pb2.UNSOLICITED_CXL_REASON_UNDEFINED,
    ) -> trading_pb2.Execution:
        order.leaves_qty = 0
        order.state = enums_pb2.ORDER_STATE_CANCELED
        text = _UNSOLICITED_TEXT.get(reason, "")
        return self._execution(
            order, enums_pb2.EXECUTION_TYPE_CANCELED, now, unsolicited_cancel_reason=reason, text=text
        )

    def _pick_open(
        self, *, fillable_only: bool = True, account: str | None = None
    ) -> trading_pb2.Order | None:
        candidates = [
            self._orders[oid]
            for oid in self._open
            if (not fillable_only or self._orders[oid].state in _FILLABLE_STATES)
            and (account is None or self._orders[oid].account == account)
        ]
        return self._rng.choice(candidates) if candidates else None

    def _cancel_reject(
        self,
        now: datetime,
        *,
        order_id: str,
        clord_id: str,
        account: str,
        symbol: str,
        reason: enums_pb2.CxlRejReason,
        text: str,
        is_replace: bool = False,
    ) -> CancelRejectEvent:
        reject = trading_pb2.CancelReject(
            order_id=order_id, clord_id=clord_id, reject_reason=reason, text=text, is_replace=is_replace
        )
        reject.transact_time.CopyFrom(to_timestamp(now))
        return CancelRejectEvent(reject=reject, account=account, symbol=symbol)

    # ------------------------------------------------------------------ actions

    def _expire_due(self, now: datetime) -> VenueUpdate | None:
        for order_id in self._open:
            order = self._orders[order_id]
            if order.HasField("good_till_time") and from_timestamp(order.good_till_time) <= now:
                order.leaves_qty = 0
                order.state = enums_pb2.ORDER_STATE_EXPIRED
                return VenueUpdate(
                    executions=(self._execution(order, enums_pb2.EXECUTION_TYPE_EXPIRED, now),)
                )
        return None

    def _new_resting(self, now: datetime) -> VenueUpdate:
        tif = self._rng.choices(
            (
                enums_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL,
                enums_pb2.TIME_IN_FORCE_DAY,
                enums_pb2.TIME_IN_FORCE_GOOD_TILL_TIME,
            ),
            weights=(6, 2, 2),
        )[0]
        order = self._new_order(now, tif=tif)
        return VenueUpdate(executions=(self._execution(order, enums_pb2.EXECUTION_TYPE_NEW, now),))

    def _new_aggressive(self, now: datetime) -> VenueUpdate:
        order = self._new_order(now, tif=enums_pb2.TIME_IN_FORCE_IMMEDIATE_OR_CANCEL)
        executions = [self._execution(order, enums_pb2.EXECUTION_TYPE_NEW, now)]
        # Walk up to three price levels, each at the limit or better for the aggressor.
        levels = self._rng.randint(1, 3)
        direction = -1 if order.side == enums_pb2.SIDE_BUY else 1
        for level in range(levels):
            if order.leaves_qty == 0:
                break
            improved = order.price + direction * (levels - 1 - level) * self._tick
            price = min(max(self._tick, improved), self._params.price_scale - self._tick)
            last_level = level == levels - 1
            full = last_level and self._rng.random() < 0.6
            qty = order.leaves_qty if full else self._rng.randint(1, max(1, order.leaves_qty // 2))
            executions.append(self._apply_fill(order, qty, price, now, aggressor=True))
        if order.leaves_qty > 0:
            executions.append(self._cancel(order, now))  # IOC: the unfilled rest is canceled
        return VenueUpdate(executions=tuple(executions))

    def _new_rejected(self, now: datetime) -> VenueUpdate:
        order = self._new_order(now, tif=enums_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL)
        reason = self._rng.choice(sorted(_REJECT_TEXT))
        order.leaves_qty = 0
        order.state = enums_pb2.ORDER_STATE_REJECTED
        execution = self._execution(
            order,
            enums_pb2.EXECUTION_TYPE_REJECTED,
            now,
            order_reject_reason=reason,
            text=_REJECT_TEXT[reason],
        )
        return VenueUpdate(executions=(execution,))

    def _fill_qty(self, order: trading_pb2.Order) -> int:
        if order.leaves_qty == 1 or self._rng.random() < 0.4:
            return order.leaves_qty
        return self._rng.randint(1, order.leaves_qty - 1)

    def _fill_resting(self, now: datetime) -> VenueUpdate:
        order = self._pick_open()
        if order is None:  # pragma: no cover - only offered when a fillable order exists
            return self._new_resting(now)
        return VenueUpdate(
            executions=(self._apply_fill(order, self._fill_qty(order), order.price, now, aggressor=False),)
        )

    def _fill_and_unfunded_cancel(self, now: datetime) -> VenueUpdate:
        order = self._pick_open()
        if order is None:  # pragma: no cover - only offered when a fillable order exists
            return self._new_resting(now)
        executions = [self._apply_fill(order, self._fill_qty(order), order.price, now, aggressor=False)]
        others = [
            self._orders[oid]
            for oid in self._open
            if oid != order.id
            and self._orders[oid].account == order.account
            and self._orders[oid].state in _FILLABLE_STATES
        ]
        if others:
            victim = self._rng.choice(others)
            executions.append(
                self._cancel(victim, now, reason=enums_pb2.UNSOLICITED_CXL_REASON_EXCHANGE_OPTION)
            )
        return VenueUpdate(executions=tuple(executions))

    def _unsolicited_cancel(self, now: datetime) -> VenueUpdate:
        order = self._pick_open()
        if order is None:  # pragma: no cover - only offered when a fillable order exists
            return self._new_resting(now)
        reason = self._rng.choice(sorted(_UNSOLICITED_TEXT))
        return VenueUpdate(executions=(self._cancel(order, now, reason=reason),))

    def _cancel_request(self, now: datetime) -> VenueUpdate:
        order = self._pick_open()
        if order is None:  # pragma: no cover - only offered when a fillable order exists
            return self._new_resting(now)
        self._pending[order.id] = _Pending(
            previous_state=order.state, new_clord_id=self._next_id("clord", "C")
        )
        order.state = enums_pb2.ORDER_STATE_PENDING_CANCEL
        order.last_transact_time.CopyFrom(to_timestamp(now))
        # The request itself produces no execution; keep the step's promise of an event with a fill.
        return self._fill_resting_or_new(now)

    def _replace_request(self, now: datetime) -> VenueUpdate:
        order = self._pick_open()
        if order is None:  # pragma: no cover - only offered when a fillable order exists
            return self._new_resting(now)
        new_qty = order.cum_qty + max(1, self._random_qty() // 2)
        self._pending[order.id] = _Pending(
            previous_state=order.state,
            new_clord_id=self._next_id("clord", "C"),
            new_price=self._random_price(),
            new_qty=new_qty,
        )
        order.state = enums_pb2.ORDER_STATE_PENDING_REPLACE
        order.last_transact_time.CopyFrom(to_timestamp(now))
        return self._fill_resting_or_new(now)

    def _fill_resting_or_new(self, now: datetime) -> VenueUpdate:
        if self._pick_open() is not None:
            return self._fill_resting(now)
        return self._new_resting(now)

    def _resolve_pending(self, now: datetime) -> VenueUpdate:
        order_id = self._rng.choice(list(self._pending))
        pending = self._pending[order_id]
        order = self._orders[order_id]
        roll = self._rng.random()

        def reject_pending(
            reason: enums_pb2.CxlRejReason, text: str, *, is_replace: bool = False
        ) -> CancelRejectEvent:
            return self._cancel_reject(
                now,
                order_id=order.id,
                clord_id=pending.new_clord_id,
                account=order.account,
                symbol=order.symbol,
                reason=reason,
                text=text,
                is_replace=is_replace,
            )

        if order.state == enums_pb2.ORDER_STATE_PENDING_CANCEL:
            if roll < 0.75:
                return VenueUpdate(executions=(self._cancel(order, now),))
            if roll < 0.9:
                # The rest traded before the cancel reached the book: fill, then "too late".
                order.state = pending.previous_state
                fill = self._apply_fill(order, order.leaves_qty, order.price, now, aggressor=False)
                reject = reject_pending(enums_pb2.CXL_REJ_REASON_TOO_LATE_TO_CANCEL, "Order already filled")
                return VenueUpdate(executions=(fill,), cancel_reject=reject)
            del self._pending[order_id]
            order.state = pending.previous_state
            order.last_transact_time.CopyFrom(to_timestamp(now))
            reject = reject_pending(
                enums_pb2.CXL_REJ_REASON_EXCHANGE_OPTION, "Cancel not allowed while the instrument is halted"
            )
            return VenueUpdate(cancel_reject=reject)
        # PENDING_REPLACE
        del self._pending[order_id]
        order.state = pending.previous_state
        if roll < 0.8:
            order.clord_id = pending.new_clord_id
            order.price = pending.new_price
            order.order_qty = pending.new_qty
            order.leaves_qty = pending.new_qty - order.cum_qty
            return VenueUpdate(executions=(self._execution(order, enums_pb2.EXECUTION_TYPE_REPLACE, now),))
        order.last_transact_time.CopyFrom(to_timestamp(now))
        reject = reject_pending(
            enums_pb2.CXL_REJ_REASON_EXCHANGE_OPTION, "Replace would breach the price band", is_replace=True
        )
        return VenueUpdate(cancel_reject=reject)

    def _duplicate_cancel(self, now: datetime) -> VenueUpdate:
        order_id = self._rng.choice(list(self._pending))
        order = self._orders[order_id]
        reject = self._cancel_reject(
            now,
            order_id=order.id,
            clord_id=self._next_id("clord", "C"),
            account=order.account,
            symbol=order.symbol,
            reason=enums_pb2.CXL_REJ_REASON_ALREADY_PENDING,
            text="A cancel or replace is already pending for this order",
        )
        return VenueUpdate(cancel_reject=reject)

    def _reject_unknown_cancel(self, now: datetime) -> VenueUpdate:
        reject = self._cancel_reject(
            now,
            order_id=f"{self._params.id_prefix}-O-UNKNOWN-{self._rng.randrange(10**6):06d}",
            clord_id=self._next_id("clord", "C"),
            account=self._rng.choice(self._params.accounts),
            symbol=self._rng.choice(self._params.symbols),
            reason=enums_pb2.CXL_REJ_REASON_UNKNOWN_ORDER,
            text="Unknown order",
        )
        return VenueUpdate(cancel_reject=reject)
