"""The official OpenAI Python SDK, unchanged, against Sluice.

Usage: python openai_python.py BASE_URL API_KEY MODEL
Exits non-zero (with a traceback) on the first failed check.
"""
import sys

import openai
from openai import OpenAI

base_url, api_key, model = sys.argv[1], sys.argv[2], sys.argv[3]
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

print("python sdk ok", openai.__version__)
