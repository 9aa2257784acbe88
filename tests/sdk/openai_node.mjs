// The official OpenAI Node SDK, unchanged, against Sluice.
// Usage: node openai_node.mjs BASE_URL API_KEY MODEL   (NODE_PATH must reach node_modules)
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(process.env.SLUICE_SDK_NODE_MODULES + "/");
const OpenAI = require("openai").default ?? require("openai");

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const r = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] });
assert.equal(r.object, "chat.completion");
assert.ok(r.choices[0].message.content);
assert.ok(r.usage.completion_tokens > 0);

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hi" }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.ok(text.length > 0);
assert.ok(usage && usage.completion_tokens > 0);

const e = await client.embeddings.create({ model, input: "abc" });
assert.equal(e.data.length, 1);

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes(model), models.join(","));

await assert.rejects(
  new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 }).models.list(),
  (err) => err.status === 401,
);
await assert.rejects(
  client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
  (err) => err.status === 404 && err.code === "model_not_found",
);
console.log("node sdk ok");
