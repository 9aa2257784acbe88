// The official OpenAI Node SDK, unchanged, against Sluice: audio uploads
// (the SDK writes the form in the object's key order: `file` first here,
// which Sluice spools), files and batches.
// Usage: node openai_node_uploads.mjs BASE_URL API_KEY AUDIO_MODEL FILES_PROVIDER
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(process.env.SLUICE_SDK_NODE_MODULES + "/");
const openai = require("openai");
const OpenAI = openai.default ?? openai;
const { toFile } = openai;

const [baseURL, apiKey, audioModel, filesProvider] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const audio = Buffer.alloc(200_000, 7);
const t = await client.audio.transcriptions.create({ file: await toFile(audio, "talk.wav"), model: audioModel });
assert.equal(t.text, `Mock transcription of talk.wav: ${audio.length} bytes of audio.`);

async function roundTrip(c) {
  const lines = [0, 1].map((i) => JSON.stringify({
    custom_id: `r${i}`, method: "POST", url: "/v1/chat/completions",
    body: { model: "gpt-test", messages: [{ role: "user", content: `hi ${i}` }] },
  }) + "\n").join("");
  const f = await c.files.create({ file: await toFile(Buffer.from(lines), "input.jsonl"), purpose: "batch" });
  assert.equal(f.bytes, Buffer.byteLength(lines));
  assert.equal((await c.files.retrieve(f.id)).id, f.id);
  assert.equal(await (await c.files.content(f.id)).text(), lines);
  let b = await c.batches.create({ input_file_id: f.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  for (let i = 0; i < 10 && b.status !== "completed"; i++) b = await c.batches.retrieve(b.id);
  assert.equal(b.status, "completed");
  const out = (await (await c.files.content(b.output_file_id)).text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(out.map((l) => l.custom_id), ["r0", "r1"]);
  assert.ok((await c.files.delete(f.id)).deleted);
}

await roundTrip(client);
await roundTrip(new OpenAI({ baseURL, apiKey, maxRetries: 0, defaultHeaders: { "x-sluice-provider": filesProvider } }));
console.log("ok");
