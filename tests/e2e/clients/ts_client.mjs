// Compatibility client: the TypeScript MCP SDK, loaded from .peers/node.
//
// usage: node ts_client.mjs {mcp|sse} URL ECHO_TOOL [MESSAGE]
// env:   PEERS_NODE_DIR  directory holding node_modules/@modelcontextprotocol/sdk
//
// Connects, lists tools and calls ECHO_TOOL; prints one JSON object on stdout.
import { createRequire } from "node:module";
import path from "node:path";

const [transportKind, url, echoTool, message = "hello from the TypeScript SDK"] = process.argv.slice(2);
if (!transportKind || !url || !echoTool) {
  console.error("usage: node ts_client.mjs {mcp|sse} URL ECHO_TOOL [MESSAGE]");
  process.exit(2);
}
const peersNode = process.env.PEERS_NODE_DIR;
if (!peersNode) {
  console.error("PEERS_NODE_DIR is not set");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(peersNode), "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { SSEClientTransport } = require("@modelcontextprotocol/sdk/client/sse.js");
const sdkVersion = require("@modelcontextprotocol/sdk/package.json").version;

const watchdog = setTimeout(() => {
  console.error("ts_client: timed out after 60 s");
  process.exit(3);
}, 60_000);

const transport =
  transportKind === "sse"
    ? new SSEClientTransport(new URL(url))
    : new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "e2e-ts-client", version: "1.0.0" });

try {
  await client.connect(transport);
  const tools = await client.listTools();
  const res = await client.callTool({ name: echoTool, arguments: { message } });
  const texts = (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text);
  const out = {
    sdk: "typescript",
    sdkVersion,
    protocolVersion: transport.protocolVersion ?? null,
    serverName: client.getServerVersion()?.name ?? null,
    tools: tools.tools.map((t) => t.name),
    isError: Boolean(res.isError),
    echo: texts.join("\n"),
  };
  if (transportKind !== "sse" && typeof transport.terminateSession === "function") {
    await transport.terminateSession().catch(() => {});
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
  clearTimeout(watchdog);
  process.exit(0);
} catch (err) {
  console.error("ts_client error:", err?.stack ?? err);
  process.exit(1);
}
