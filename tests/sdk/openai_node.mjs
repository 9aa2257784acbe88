// The official OpenAI Node SDK, unchanged, against Sluice.
// Usage: node openai_node.mjs BASE_URL API_KEY MODEL [RESPONSES_MODEL ...]
// (SLUICE_SDK_NODE_MODULES must hold the SDK.) MODEL for chat, embeddings and
// models; each RESPONSES_MODEL for the Responses API.
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(process.env.SLUICE_SDK_NODE_MODULES + "/");
const OpenAI = require("openai").default ?? require("openai");

const [baseURL, apiKey, model, ...responsesModels] = process.argv.slice(2);
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
// The Responses API, on each kind of deployment.
const tools = [{
  type: "function",
  name: "get_weather",
  description: "Weather for a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
}];
for (const rmodel of responsesModels) {
  const r = await client.responses.create({ model: rmodel, instructions: "Be brief.", input: "Say hello" });
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.ok(r.output_text, JSON.stringify(r));
  assert.ok(r.usage.output_tokens > 0);

  const r2 = await client.responses.create({ model: rmodel, input: "Again?", previous_response_id: r.id });
  assert.equal(r2.previous_response_id, r.id);
  const got = await client.responses.retrieve(r.id);
  assert.equal(got.output_text, r.output_text);

  // Streamed: the SDK's helper accumulates the typed events.
  const s = client.responses.stream({ model: rmodel, input: "Say hello" });
  let deltas = "";
  for await (const event of s) {
    if (event.type === "response.output_text.delta") deltas += event.delta;
  }
  const final = await s.finalResponse();
  assert.ok(deltas.length > 0);
  assert.equal(final.output_text, deltas);

  // A tool call, and its output sent back in the same conversation.
  const t = await client.responses.create(
    { model: rmodel, input: "Weather in Paris?", tools },
    { headers: { "x-mock-tool-call": "get_weather" } },
  );
  const call = t.output.find((i) => i.type === "function_call");
  assert.ok(call && call.name === "get_weather", JSON.stringify(t.output));
  const done = await client.responses.create({
    model: rmodel,
    previous_response_id: t.id,
    tools,
    input: [{ type: "function_call_output", call_id: call.call_id, output: "Sunny" }],
  });
  assert.equal(done.status, "completed");

  await client.responses.delete(r.id);
  await assert.rejects(client.responses.retrieve(r.id), (err) => err.status === 404);
}
console.log("node sdk ok");
