// check.mjs validates AsyncAPI documents with the official parser,
// @asyncapi/parser (schema validation plus its Spectral rules). It reads a
// JSON array of {"name", "text"} on stdin, prints every diagnostic of
// severity error as "name: path: message [code]", and exits 1 if there
// was any. Used by generator's TestAsyncAPIValid.
import { createRequire } from 'node:module';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const docs = JSON.parse(input);

const parser = new Parser();
let failed = 0;
for (const { name, text } of docs) {
  const { document, diagnostics } = await parser.parse(text);
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of errors) {
    console.log(`${name}: /${d.path.join('/')}: ${d.message} [${d.code}]`);
  }
  if (errors.length > 0 || !document) failed++;
  else if (document.version() !== '3.0.0') {
    failed++;
    console.log(`${name}: AsyncAPI version ${document.version()}, want 3.0.0`);
  }
}
const { version } = createRequire(import.meta.url)('@asyncapi/parser/package.json');
console.log(`@asyncapi/parser ${version}: ${docs.length - failed} of ${docs.length} documents valid`);
process.exit(failed ? 1 : 0);
