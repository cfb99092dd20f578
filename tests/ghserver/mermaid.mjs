// Parse mermaid diagrams with mermaid's own parser (the one GitHub renders with), in Node with a
// jsdom window. Reads a JSON list of diagram texts on stdin; prints a JSON list: null for a
// diagram that parses, the parser's message for one that does not.
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
globalThis.Element = dom.window.Element;
const { default: mermaid } = await import("mermaid");

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const text of JSON.parse(input)) {
  try {
    await mermaid.parse(text);
    results.push(null);
  } catch (e) {
    results.push(String(e.message || e));
  }
}
process.stdout.write(JSON.stringify(results));
