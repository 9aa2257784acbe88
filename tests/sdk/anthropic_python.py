"""The official Anthropic Python SDK, unchanged, against Sluice's /v1/messages.

Usage: python anthropic_python.py BASE_URL API_KEY MODEL [MODEL ...]
Every model is checked; the first must be an Anthropic deployment (passed
through), the others are translated. Exits non-zero (with a traceback) on
the first failed check.
"""
import sys

import anthropic
from anthropic import Anthropic

base_url, api_key, models = sys.argv[1], sys.argv[2], sys.argv[3:]
client = Anthropic(base_url=base_url, api_key=api_key, max_retries=0)

tools = [{
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]

for model in models:
    # Non-stream.
    m = client.messages.create(model=model, max_tokens=64, system="Be brief.",
                               messages=[{"role": "user", "content": "Hello"}])
    assert m.type == "message" and m.role == "assistant", m
    assert m.content[0].type == "text" and m.content[0].text, m
    assert m.stop_reason == "end_turn", m
    assert m.usage.output_tokens > 0 and m.usage.input_tokens > 0, m.usage

    # Stream: the SDK's own accumulator rebuilds the same message.
    with client.messages.stream(model=model, max_tokens=64, system="Be brief.",
                                messages=[{"role": "user", "content": "Hello"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == m.content[0].text, (text, m.content[0].text)
    assert final.content[0].text == text and final.stop_reason == "end_turn", final
    assert final.usage.output_tokens == m.usage.output_tokens, final.usage

    # Tools, streamed: the SDK parses the tool input from input_json_delta events.
    with client.messages.stream(model=model, max_tokens=64, tools=tools, tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather in Paris?"}],
                                extra_headers={"x-mock-tool-call": "get_weather"}) as s:
        final = s.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather", final
    assert isinstance(block.input, dict) and block.input.get("query"), block
    assert final.stop_reason == "tool_use", final

    # Raw headers of the gateway.
    raw = client.messages.with_raw_response.create(model=model, max_tokens=8,
                                                   messages=[{"role": "user", "content": "x"}])
    assert raw.headers.get("x-sluice-deployment"), dict(raw.headers)

    # Token counting: Anthropic counts, Sluice estimates for the others; never 0.
    n = client.messages.count_tokens(model=model, system="Be brief.", tools=tools,
                                     messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert n.input_tokens > 5, n

    # Thinking and tools, streamed, with Claude Code's newer members: an
    # Anthropic deployment thinks out loud (a thinking block, then the tool
    # call); a translated one answers the tool call.
    with client.messages.stream(model=model, max_tokens=2048, tools=tools,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "Weather in Paris?"}],
                                extra_body={"context_management": {"edits": []}, "output_config": {"effort": "high"}},
                                extra_headers={"x-mock-tool-call": "get_weather"}) as s:
        final = s.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds[-1] == "tool_use" and final.stop_reason == "tool_use", final
    if model == models[0]:
        assert kinds[0] == "thinking" and final.content[0].thinking and final.content[0].signature, final
        # The thinking block goes back with the tool's result, as Claude Code sends it.
        m = client.messages.create(model=model, max_tokens=2048, tools=tools,
                                   thinking={"type": "enabled", "budget_tokens": 1024},
                                   messages=[{"role": "user", "content": "Weather in Paris?"},
                                             {"role": "assistant", "content": final.content},
                                             {"role": "user", "content": [{"type": "tool_result",
                                              "tool_use_id": final.content[-1].id, "content": "Sunny"}]}])
        assert m.content[-1].type == "text", m

# Errors arrive as the SDK's typed exceptions, parsed from Anthropic's error shape.
try:
    client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except anthropic.NotFoundError as err:
    assert err.status_code == 404
    assert err.body["error"]["type"] == "not_found_error", err.body
try:
    Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0).messages.create(
        model=models[0], max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("bad key accepted")
except anthropic.AuthenticationError as err:
    assert err.status_code == 401
try:
    client.messages.create(model=models[0], max_tokens=8, messages=[{"role": "user", "content": "x"}],
                           extra_headers={"x-mock-fault": "429"})
    raise AssertionError("429 not raised")
except anthropic.RateLimitError as err:
    assert err.status_code == 429

print("anthropic python sdk: ok")
