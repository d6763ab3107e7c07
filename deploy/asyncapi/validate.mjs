// Parses an AsyncAPI document with the AsyncAPI project's own parser and prints each diagnostic as
// "<severity> <code> <path> <message>"; exits 1 when the document is not parsed or has an error.
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';

const SEVERITIES = ['error', 'warning', 'info', 'hint'];
const { document, diagnostics } = await new Parser().parse(readFileSync(process.argv[2], 'utf8'));
for (const d of diagnostics) console.log(SEVERITIES[d.severity], d.code, d.path.join('.'), d.message);
process.exit(document && !diagnostics.some((d) => d.severity === 0) ? 0 : 1);
