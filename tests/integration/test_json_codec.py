"""JSON to and from Postgres: orjson writes, pydantic-core reads, the standard library takes what either refuses,
and nothing changes on the way."""

import json

from shared.db import decode_json, encode_json


async def test_values_come_back_as_they_went_in(capture_pool):
    values = [
        {"sku": "SKU-1", "quantity": 3, "price": "12.30", "nested": [{"a": None, "b": True, "c": 1.5}]},
        {"name": "Zoë Ñandú 東京", "emoji": "📦", "quote": 'a "b" \\ c', "control": "tab\there"},
        {"huge": 2**70, "negative": -(2**65)},  # past 64 bits: orjson refuses to write it (and would read a float)
        [],
        "a string",
    ]
    for value in values:
        assert await capture_pool.fetchval("SELECT $1::jsonb", value) == value


async def test_keys_that_are_not_strings_are_written_as_the_standard_library_writes_them(capture_pool):
    assert await capture_pool.fetchval("SELECT $1::jsonb", {1: "one"}) == {"1": "one"}


def test_what_orjson_refuses_is_written_by_the_standard_library():
    assert json.loads(encode_json({"huge": 2**70})) == {"huge": 2**70}
    assert encode_json({"sku": "A", "quantity": 2}) == '{"sku":"A","quantity":2}'  # orjson's compact form


def test_what_pydantic_core_refuses_is_read_by_the_standard_library():
    assert decode_json('"\\ud800"') == "\ud800"  # a lone surrogate: never in jsonb, but valid JSON
    assert decode_json('{"huge": 1180591620717411303424}') == {"huge": 2**70}
