// check.mjs parses Mermaid diagrams with mermaid's own parser, the one
// GitHub's renderer runs. It reads a JSON array of {"name", "text"} on stdin,
// prints "name: message" for every diagram that does not parse, and exits 1
// if any did not. Used by generator's TestMermaidParses.
//
// mermaid sanitises labels with DOMPurify, which needs a DOM: jsdom
// provides one, so nothing here needs a browser.
import { createRequire } from 'node:module';
import { JSDOM } from 'jsdom';

const { window } = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');

let input = '';
for await (const chunk of process.stdin) input += chunk;
const diagrams = JSON.parse(input);

let failed = 0;
for (const { name, text } of diagrams) {
  try {
    const { diagramType } = await mermaid.parse(text);
    if (!diagramType.startsWith('flowchart')) {
      throw new Error(`diagram type ${diagramType}, want a flowchart`);
    }
  } catch (err) {
    failed++;
    console.log(`${name}: ${String(err.message ?? err).trim()}`);
  }
}
const { version } = createRequire(import.meta.url)('mermaid/package.json');
console.log(`mermaid ${version}: ${diagrams.length - failed} of ${diagrams.length} diagrams parse`);
process.exit(failed ? 1 : 0);
