"""The reconstructed venue protos: generated code in sync, documented names and numbers intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from connector._pb.polymarket.v1 import dropcopy_pb2, enums_pb2, report_pb2, trading_pb2

REPO = Path(__file__).resolve().parents[2]

# venue-api.md §1.8: every enum member whose name AND number the venue documents.
DOCUMENTED_ENUM_VALUES: dict[str, dict[str, int]] = {
    "Side": {"SIDE_BUY": 1, "SIDE_SELL": 2},
    "OrderType": {
        "ORDER_TYPE_MARKET_TO_LIMIT": 1,
        "ORDER_TYPE_LIMIT": 2,
        "ORDER_TYPE_STOP": 3,
        "ORDER_TYPE_STOP_LIMIT": 4,
    },
    "TimeInForce": {
        "TIME_IN_FORCE_DAY": 1,
        "TIME_IN_FORCE_GOOD_TILL_CANCEL": 2,
        "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL": 3,
        "TIME_IN_FORCE_GOOD_TILL_TIME": 4,
        "TIME_IN_FORCE_FILL_OR_KILL": 5,
    },
    "OrderState": {
        "ORDER_STATE_NEW": 0,
        "ORDER_STATE_PARTIALLY_FILLED": 1,
        "ORDER_STATE_FILLED": 2,
        "ORDER_STATE_CANCELED": 3,
        "ORDER_STATE_REPLACED": 4,
        "ORDER_STATE_REJECTED": 5,
        "ORDER_STATE_EXPIRED": 6,
        "ORDER_STATE_PENDING_NEW": 7,
        "ORDER_STATE_PENDING_REPLACE": 8,
        "ORDER_STATE_PENDING_CANCEL": 9,
        "ORDER_STATE_PENDING_RISK": 10,
    },
    "ExecutionType": {
        "EXECUTION_TYPE_NEW": 0,
        "EXECUTION_TYPE_PARTIAL_FILL": 1,
        "EXECUTION_TYPE_FILL": 2,
        "EXECUTION_TYPE_CANCELED": 3,
        "EXECUTION_TYPE_REPLACE": 4,
        "EXECUTION_TYPE_REJECTED": 5,
        "EXECUTION_TYPE_EXPIRED": 6,
        "EXECUTION_TYPE_DONE_FOR_DAY": 7,
    },
    "OrdRejectReason": {
        "ORD_REJECT_REASON_EXCHANGE_OPTION": 0,
        "ORD_REJECT_REASON_UNKNOWN_SYMBOL": 1,
        "ORD_REJECT_REASON_EXCHANGE_CLOSED": 2,
        "ORD_REJECT_REASON_INCORRECT_QUANTITY": 3,
        "ORD_REJECT_REASON_INVALID_PRICE_INCREMENT": 4,
        "ORD_REJECT_REASON_INCORRECT_ORDER_TYPE": 5,
        "ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS": 6,
        "ORD_REJECT_REASON_NO_LIQUIDITY": 7,
    },
    "TradeState": {
        "TRADE_STATE_UNDEFINED": 0,
        "TRADE_STATE_NEW": 1,
        "TRADE_STATE_CLEARED": 2,
        "TRADE_STATE_BUSTED": 3,
        "TRADE_STATE_INFLIGHT": 4,
        "TRADE_STATE_PENDING_RISK": 5,
        "TRADE_STATE_PENDING_CLEARED": 6,
        "TRADE_STATE_REJECTED": 7,
        "TRADE_STATE_CLEARING_ACKNOWLEDGED": 8,
        "TRADE_STATE_RETRY_REQUEST": 9,
    },
}

# venue-api.md §1.8: enums whose member names are documented but whose numbers are not.
DOCUMENTED_ENUM_NAMES: dict[str, set[str]] = {
    "UnsolicitedCxlReason": {
        "UNSOLICITED_CXL_REASON_CONNECTION_LOSS",
        "UNSOLICITED_CXL_REASON_LOGOUT",
        "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION",
        "UNSOLICITED_CXL_REASON_OTHER",
    },
    "SelfMatchPreventionInstruction": {
        "SELF_MATCH_PREVENTION_INSTRUCTION_REJECT_AGGRESSOR",
        "SELF_MATCH_PREVENTION_INSTRUCTION_CANCEL_RESTING",
        "SELF_MATCH_PREVENTION_INSTRUCTION_REMOVE_BOTH",
    },
    "OrderCapacity": {
        f"ORDER_CAPACITY_{n}"
        for n in (
            "AGENCY",
            "PRINCIPAL",
            "PROPRIETARY",
            "INDIVIDUAL",
            "RISKLESS_PRINCIPAL",
            "AGENT_FOR_OTHER_MEMBER",
        )
    },
    "ManualOrderIndicator": {"MANUAL_ORDER_INDICATOR_MANUAL", "MANUAL_ORDER_INDICATOR_AUTOMATED"},
    "OrderStateFilter": {
        f"ORDER_STATE_FILTER_{n}"
        for n in (
            "OPEN",
            "CLOSED",
            "NEW",
            "PARTIALLY_FILLED",
            "FILLED",
            "CANCELED",
            "REPLACED",
            "REJECTED",
            "EXPIRED",
            "PENDING_RISK",
        )
    },
    "TradeType": {
        "TRADE_TYPE_REGULAR",
        "TRADE_TYPE_REQUEST_FOR_QUOTE",
        "TRADE_TYPE_BLOCK",
        "TRADE_TYPE_CROSS",
    },
}

# venue-api.md §1.6 / §1.7 / §1.5: documented field names (the snake_case of the OpenAPI names).
ORDER_FIELDS = {
    "id", "type", "side", "order_qty", "symbol", "clord_id", "time_in_force", "account", "cum_qty",
    "avg_px", "leaves_qty", "state", "participant", "price", "insert_time", "stop_price", "min_qty",
    "create_time", "all_or_none", "cross_id", "host_cross_id", "submitting_participant",
    "client_account_id", "client_participant_id", "parent_order_id", "commissions_basis_points",
    "participate_dont_initiate", "cash_order_qty", "strict_limit", "good_till_time", "best_limit",
    "immediately_executable_limit", "last_trade_id", "commission_notional_total_collected",
    "self_match_prevention_instruction", "order_capacity", "ignore_price_validity_checks",
    "last_transact_time", "price_scale", "fractional_quantity_scale", "price_to_quantity_filled",
    "maker_commissions_basis_points", "manual_order_indicator",
}  # fmt: skip
EXECUTION_FIELDS = {
    "id", "order", "last_shares", "last_px", "type", "text", "order_reject_reason", "transact_time",
    "leg_prices", "trade_id", "aggressor", "commission_notional_collected", "unsolicited_cancel_reason",
    "trace_id", "commission_spread_px", "transact_trade_date", "block_trade_indicator",
}  # fmt: skip
CANCEL_REJECT_FIELDS = {"order_id", "clord_id", "reject_reason", "text", "is_replace", "transact_time"}
# venue-api.md §6: the documented Drop Copy fields (names and types; numbers provisional).
DROP_COPY_REQUEST_FIELDS = {"resume_token", "resume_time", "symbols", "firms"}
DROP_COPY_RESPONSE_FIELDS = {"resume_token", "executions"}


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    out = tmp_path / "_pb"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "generate_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    committed = REPO / "connector" / "_pb"
    fresh_files = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    committed_files = {
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh_files == committed_files, "connector/_pb holds a different set of files: run `make protos`"
    stale = sorted(
        str(rel) for rel in fresh_files if (out / rel).read_bytes() != (committed / rel).read_bytes()
    )
    assert not stale, f"connector/_pb is out of date with protos/ ({', '.join(stale)}): run `make protos`"


@pytest.mark.parametrize("enum_name", sorted(DOCUMENTED_ENUM_VALUES))
def test_documented_enum_values(enum_name: str) -> None:
    enum = getattr(enums_pb2, enum_name)
    for name, number in DOCUMENTED_ENUM_VALUES[enum_name].items():
        assert enum.Value(name) == number, f"{enum_name}.{name} must be {number}"


@pytest.mark.parametrize("enum_name", sorted(DOCUMENTED_ENUM_NAMES))
def test_documented_enum_names(enum_name: str) -> None:
    enum = getattr(enums_pb2, enum_name)
    assert DOCUMENTED_ENUM_NAMES[enum_name] <= set(enum.keys())


def test_cancel_reject_reason_is_the_provisional_fix_102_mirror() -> None:
    assert dict(enums_pb2.CxlRejReason.items()) == {
        "CXL_REJ_REASON_TOO_LATE_TO_CANCEL": 0,
        "CXL_REJ_REASON_UNKNOWN_ORDER": 1,
        "CXL_REJ_REASON_EXCHANGE_OPTION": 2,
        "CXL_REJ_REASON_ALREADY_PENDING": 3,
    }


def test_documented_field_numbers() -> None:
    order = trading_pb2.Order.DESCRIPTOR
    assert order.fields_by_name["price_to_quantity_filled"].number == 41
    assert order.fields_by_name["fractional_quantity_scale"].number == 49
    assert 35 not in order.fields_by_number, "35 is the venue's retired `context` field and must stay unused"
    assert (35, 36) in [tuple(r) for r in _reserved_ranges(order)]


def _reserved_ranges(descriptor: object) -> list[tuple[int, int]]:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)  # type: ignore[attr-defined]
    return [(r.start, r.end) for r in proto.reserved_range]


def test_documented_message_fields() -> None:
    assert set(trading_pb2.Order.DESCRIPTOR.fields_by_name) == ORDER_FIELDS
    assert set(trading_pb2.Execution.DESCRIPTOR.fields_by_name) == EXECUTION_FIELDS
    assert set(trading_pb2.CancelReject.DESCRIPTOR.fields_by_name) == CANCEL_REJECT_FIELDS
    ptqf = trading_pb2.Order.DESCRIPTOR.fields_by_name["price_to_quantity_filled"]
    assert ptqf.message_type.GetOptions().map_entry
    assert ptqf.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_INT64
    assert ptqf.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_INT64
    assert (
        trading_pb2.Order.DESCRIPTOR.fields_by_name["commissions_basis_points"].type
        == FieldDescriptor.TYPE_STRING
    )


def test_stream_envelope_shape() -> None:
    response = trading_pb2.CreateOrderSubscriptionResponse.DESCRIPTOR
    assert [f.name for f in response.oneofs_by_name["event"].fields] == ["heartbeat", "snapshot", "update"]
    assert {"session_id", "processed_sent_time"} <= set(response.fields_by_name)
    assert (
        response.fields_by_name["processed_sent_time"].message_type.full_name == "google.protobuf.Timestamp"
    )
    assert set(trading_pb2.CreateOrderSubscriptionRequest.DESCRIPTOR.fields_by_name) == {
        "symbols",
        "accounts",
        "snapshot_only",
    }
    snapshot = response.fields_by_name["snapshot"].message_type
    assert snapshot.fields_by_name["orders"].message_type.full_name == "polymarket.v1.Order"
    update = response.fields_by_name["update"].message_type
    assert update.fields_by_name["executions"].message_type.full_name == "polymarket.v1.Execution"
    assert update.fields_by_name["cancel_reject"].message_type.full_name == "polymarket.v1.CancelReject"
    service = trading_pb2.DESCRIPTOR.services_by_name["OrderEntryAPI"]
    method = service.methods_by_name["CreateOrderSubscription"]
    assert method.server_streaming and not method.client_streaming


def test_report_messages_parse_grpc_gateway_json() -> None:
    from google.protobuf import json_format

    body = {
        "executions": [
            {
                "id": "E1",
                "type": "EXECUTION_TYPE_PARTIAL_FILL",
                "lastShares": "300",
                "lastPx": "9700",
                "transactTime": "2026-11-22T10:00:00.123456Z",
                "order": {"id": "O1", "priceScale": "10000", "priceToQuantityFilled": {"9700": "300"}},
                "someFutureField": 1,
            }
        ],
        "nextPageToken": "abc",
        "eof": False,
    }
    parsed = json_format.ParseDict(body, report_pb2.SearchExecutionsResponse(), ignore_unknown_fields=True)
    execution = parsed.executions[0]
    assert execution.type == enums_pb2.EXECUTION_TYPE_PARTIAL_FILL
    assert execution.last_shares == 300
    assert dict(execution.order.price_to_quantity_filled) == {9700: 300}
    assert execution.transact_time.ToMicroseconds() % 1_000_000 == 123456
    # Over REST the zero members are omitted: a missing type means EXECUTION_TYPE_NEW.
    bare = json_format.ParseDict({"executions": [{"id": "E2"}]}, report_pb2.SearchExecutionsResponse())
    assert bare.executions[0].type == enums_pb2.EXECUTION_TYPE_NEW
    orders = report_pb2.SearchOrdersResponse.DESCRIPTOR
    assert {"order", "next_page_token", "last_executions"} == set(orders.fields_by_name)


def test_generated_code_does_not_need_a_top_level_polymarket_package() -> None:
    probe = (
        "import sys; import connector._pb.polymarket.v1.trading_pb2_grpc; "
        "leaked = [m for m in sys.modules if m.split('.')[0] == 'polymarket']; "
        "assert not leaked, leaked"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


def test_drop_copy_contract_shape() -> None:
    request = dropcopy_pb2.CreateDropCopySubscriptionRequest.DESCRIPTOR
    response = dropcopy_pb2.CreateDropCopySubscriptionResponse.DESCRIPTOR
    assert request.full_name == "polymarket.v1.CreateDropCopySubscriptionRequest"
    assert response.full_name == "polymarket.v1.CreateDropCopySubscriptionResponse"
    assert set(request.fields_by_name) == DROP_COPY_REQUEST_FIELDS
    assert set(response.fields_by_name) == DROP_COPY_RESPONSE_FIELDS
    assert request.fields_by_name["resume_token"].type == FieldDescriptor.TYPE_BYTES
    assert request.fields_by_name["resume_time"].message_type.full_name == "google.protobuf.Timestamp"
    for name in ("symbols", "firms"):
        field = request.fields_by_name[name]
        assert field.type == FieldDescriptor.TYPE_STRING
        assert field.is_repeated
    assert response.fields_by_name["resume_token"].type == FieldDescriptor.TYPE_BYTES
    executions = response.fields_by_name["executions"]
    assert executions.is_repeated
    # The same Execution as the order stream's, not a copy of it.
    assert executions.message_type is trading_pb2.Execution.DESCRIPTOR
    assert not response.oneofs, "Drop Copy has no heartbeat/snapshot oneof"
    service = dropcopy_pb2.DESCRIPTOR.services_by_name["DropCopyAPI"]
    assert service.full_name == "polymarket.v1.DropCopyAPI"
    method = service.methods_by_name["CreateDropCopySubscription"]
    assert method.server_streaming and not method.client_streaming
    assert method.input_type is request and method.output_type is response
    assert dropcopy_pb2.DESCRIPTOR.name == "polymarket/v1/dropcopy.proto"


def test_drop_copy_numbers_are_the_provisional_ones_in_the_readme() -> None:
    # protos/README.md lists these as provisional; a change must change the README too.
    request = dropcopy_pb2.CreateDropCopySubscriptionRequest.DESCRIPTOR
    response = dropcopy_pb2.CreateDropCopySubscriptionResponse.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "resume_token": 1,
        "resume_time": 2,
        "symbols": 3,
        "firms": 4,
    }
    assert {f.name: f.number for f in response.fields} == {"resume_token": 1, "executions": 2}
    readme = (REPO / "protos" / "README.md").read_text()
    assert "`CreateDropCopySubscriptionRequest` | `resume_token` (bytes) | 1 |" in readme


def test_drop_copy_response_tolerates_unknown_fields_and_enum_values() -> None:
    execution = trading_pb2.Execution(id="E1", type=enums_pb2.EXECUTION_TYPE_FILL)
    response = dropcopy_pb2.CreateDropCopySubscriptionResponse(
        resume_token=b"\x00\xffpos", executions=[execution]
    )
    wire = response.SerializeToString()
    # An unknown field 9999 (varint 42) on the envelope, and ExecutionType 99 inside the execution.
    unknown = bytes([0xF8, 0xF0, 0x04, 42])
    odd = trading_pb2.Execution(id="E2")
    odd.type = 99  # type: ignore[assignment]
    wire += unknown + dropcopy_pb2.CreateDropCopySubscriptionResponse(executions=[odd]).SerializeToString()
    parsed = dropcopy_pb2.CreateDropCopySubscriptionResponse.FromString(wire)
    assert parsed.resume_token == b"\x00\xffpos"
    assert [e.id for e in parsed.executions] == ["E1", "E2"]
    assert parsed.executions[1].type == 99


def test_drop_copy_request_parses_by_json_name() -> None:
    from google.protobuf import json_format

    body = {"resumeToken": "AP9wb3M=", "resumeTime": "2026-11-22T10:00:00Z", "symbols": ["S"], "firms": []}
    parsed = json_format.ParseDict(body, dropcopy_pb2.CreateDropCopySubscriptionRequest())
    assert parsed.resume_token == b"\x00\xffpos"
    assert parsed.resume_time.seconds > 0
    assert list(parsed.symbols) == ["S"]
