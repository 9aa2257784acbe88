"""The official OpenAI Python SDK, unchanged, against Sluice.

Usage: python openai_python.py BASE_URL API_KEY MODEL [RESPONSES_MODEL ...]
MODEL is used for chat, completions, embeddings and models; each
RESPONSES_MODEL for the Responses API (one passed through to a server that
serves it, others translated to chat). Exits non-zero (with a traceback) on
the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key, model, responses_models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

# Chat, non-stream.
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
assert r.object == "chat.completion", r
assert r.choices[0].message.content, r
assert r.usage and r.usage.completion_tokens > 0, r

# Chat, stream, without and with usage.
chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text, chunks
assert all(c.usage is None for c in chunks), "usage chunk shown although not asked"
chunks = list(
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
)
assert chunks[-1].usage and chunks[-1].usage.completion_tokens > 0, chunks[-1]

# Raw response headers.
raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "x"}])
assert raw.headers.get("x-sluice-deployment"), dict(raw.headers)
assert raw.headers.get("x-request-id"), dict(raw.headers)

# Legacy completions, embeddings, models.
c = client.completions.create(model=model, prompt="Once upon", max_tokens=3)
assert c.choices[0].text, c
e = client.embeddings.create(model=model, input=["a", "b"])
assert len(e.data) == 2 and len(e.data[0].embedding) > 0, e
ids = [m.id for m in client.models.list()]
assert model in ids, ids

# Errors arrive as the SDK's typed exceptions.
try:
    OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).models.list()
    raise AssertionError("bad key accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err.body
try:
    client.chat.completions.create(model=model, messages=[])
    raise AssertionError("empty messages accepted")
except openai.BadRequestError as err:
    assert err.status_code == 400

# The Responses API, on each kind of deployment.
tools = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
for rmodel in responses_models:
    r = client.responses.create(model=rmodel, instructions="Be brief.", input="Say hello")
    assert r.object == "response" and r.status == "completed", r
    assert r.output_text, r
    assert r.usage and r.usage.output_tokens > 0 and r.usage.input_tokens > 0, r.usage

    # A conversation continued by id, read back, then deleted.
    r2 = client.responses.create(model=rmodel, input="And once more?", previous_response_id=r.id)
    assert r2.previous_response_id == r.id and r2.output_text, r2
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text, got

    # Streamed: the SDK's accumulator rebuilds the answer from the typed events.
    with client.responses.stream(model=rmodel, input="Say hello") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas and final.output_text == deltas, (deltas, final)
    assert final.status == "completed" and final.usage.output_tokens > 0, final

    # Tool calls, whole and streamed, and the tool's output sent back by id.
    r = client.responses.create(model=rmodel, input="Weather in Paris?", tools=tools,
                                extra_headers={"x-mock-tool-call": "get_weather"})
    call = next(i for i in r.output if i.type == "function_call")
    assert call.name == "get_weather" and call.call_id, call
    assert json.loads(call.arguments).get("query"), call.arguments
    done = client.responses.create(model=rmodel, previous_response_id=r.id, tools=tools,
                                   input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}])
    assert done.status == "completed" and done.output_text, done
    with client.responses.stream(model=rmodel, input="Weather in Rome?", tools=tools,
                                 extra_headers={"x-mock-tool-call": "get_weather"}) as s:
        final = s.get_final_response()
    assert any(i.type == "function_call" and i.name == "get_weather" for i in final.output), final

    n = client.responses.input_tokens.count(model=rmodel, input="one two three")
    assert n.input_tokens >= 3, n

    client.responses.delete(r.id)
    try:
        client.responses.retrieve(r.id)
        raise AssertionError("deleted response still there")
    except openai.NotFoundError as err:
        assert err.status_code == 404

print("python sdk ok", openai.__version__)
