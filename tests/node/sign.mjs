// A department's signer in JavaScript: reads a JSON array of {key, event} (key: the HMAC
// key as UTF-8 text) on stdin and writes one JSON Lines record per event, signed with
// Node's crypto over the RFC 8785 canonical JSON the npm package canonicalize writes.
import { createHmac } from 'node:crypto';
import canonicalize from 'canonicalize';

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  for (const { key, event } of JSON.parse(input)) {
    delete event.signature;
    event.signature = createHmac('sha256', key).update(canonicalize(event), 'utf8').digest('hex');
    process.stdout.write(JSON.stringify(event) + '\n');
  }
});
