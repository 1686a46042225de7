# Summarises sweep-ab.js's output: per round, per host, the review and meta tables' counters (deltas for events).
import re,sys
def key(t, kind, name): return '%s_memory_%s{%s="%s"}' % (t, 'size' if kind == 'measure' else 'events_total', kind, name)
for f in sys.argv[1:]:
    print('==', f)
    prev = {}
    for line in open(f):
        m = re.search(r'round (\d+): p99 ([\d.]+) errors (\d+) cpu µs/req (\{.*\})', line)
        if m:
            head = "round %s: p99 %s err %s %s" % m.groups(); continue
        if '  hosts:' in line:
            out = []
            for i, h in enumerate(line.split('hosts:')[1].split('||')):
                cur = {k: int(v) for k, v in re.findall(r'(\w+\{[^}]*\}) (\d+)', h)}
                g = lambda t, kind, n: cur.get(key(t, kind, n), 0)
                d = lambda t, n: g(t, 'event', n) - prev.get((i, key(t, 'event', n)), 0)
                out.append("h%d: rev MB %d dirty %d loads %d refreshed +%d swept +%d dirty_reads +%d served +%d max %d | meta dirty %d refreshed +%d swept +%d dirty_reads +%d loads %d" % (
                    i, g('review', 'measure', 'bytes') / 1e6, g('review', 'measure', 'dirty'), g('review', 'event', 'loads'), d('review', 'refreshed'), d('review', 'swept'), d('review', 'dirty_reads'), d('review', 'served'), g('review', 'measure', 'max_product'),
                    g('meta', 'measure', 'dirty'), d('meta', 'refreshed'), d('meta', 'swept'), d('meta', 'dirty_reads'), g('meta', 'event', 'loads')))
                for k in cur: prev[(i, k)] = cur[k]
            print(head); [print('   ', o) for o in out]
