"""The official OpenAI Python SDK, unchanged, against Sluice: audio uploads,
files and batches.

Usage: python openai_python_uploads.py BASE_URL API_KEY AUDIO_MODEL FILES_PROVIDER
AUDIO_MODEL transcribes and translates; files and batches go once to the
default provider and once to FILES_PROVIDER (the `x-sluice-provider`
header). Exits non-zero (with a traceback) on the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key, audio_model, files_provider = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

audio = bytes(range(256)) * 400
t = client.audio.transcriptions.create(model=audio_model, file=("talk.wav", audio, "audio/wav"))
assert t.text == f"Mock transcription of talk.wav: {len(audio)} bytes of audio.", t
text = client.audio.translations.create(model=audio_model, file=("talk.wav", audio), response_format="text")
assert "Mock translation of talk.wav" in text, text

try:
    client.audio.transcriptions.create(model="no-such-model", file=("a.wav", b"x"))
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.status_code == 404, e


def round_trip(c):
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-test", "messages": [{"role": "user", "content": f"hi {i}"}]}}
        for i in range(2)
    ]
    data = "".join(json.dumps(l) + "\n" for l in lines).encode()
    f = c.files.create(file=("input.jsonl", data), purpose="batch")
    assert f.bytes == len(data) and f.filename == "input.jsonl", f
    assert c.files.retrieve(f.id).id == f.id
    assert c.files.content(f.id).read() == data
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    for _ in range(10):
        b = c.batches.retrieve(b.id)
        if b.status == "completed":
            break
    assert b.status == "completed", b
    assert b.request_counts.completed == 2, b
    out = c.files.content(b.output_file_id).text.splitlines()
    assert [json.loads(l)["custom_id"] for l in out] == ["r0", "r1"], out
    assert json.loads(out[0])["response"]["body"]["object"] == "chat.completion", out
    assert any(x.id == b.id for x in c.batches.list().data)
    assert c.files.delete(f.id).deleted
    try:
        c.files.retrieve(f.id)
        raise AssertionError("a deleted file was found")
    except openai.NotFoundError:
        pass


round_trip(client)
round_trip(OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                  default_headers={"x-sluice-provider": files_provider}))
print("ok")
