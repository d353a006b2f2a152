// Reads COUNT "reading" events from URL with the eventsource package (as a
// browser's EventSource would: no headers, token in the query) and prints
// each as one JSON line {"id","data"}. Exits 1 on an error or after 30 s.
import { EventSource } from 'eventsource';

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg ?? 3);
const timer = setTimeout(() => { console.error('timeout'); process.exit(1); }, 30000);

const es = new EventSource(url);
let seen = 0;
es.addEventListener('reading', (ev) => {
  if (seen >= count) return; // the rest of a chunk read before close
  console.log(JSON.stringify({ id: ev.lastEventId, data: JSON.parse(ev.data) }));
  if (++seen >= count) {
    es.close();
    clearTimeout(timer);
  }
});
es.addEventListener('open', () => console.error('open'));
es.onerror = (err) => {
  console.error('error', err.code ?? '', err.message ?? '');
  es.close();
  clearTimeout(timer);
  process.exitCode = 1;
};
