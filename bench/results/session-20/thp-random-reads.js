// Ad hoc (twentieth session): random reads over a 2 GB Int32Array, ns per read; run with and without
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc then madvises large allocations for transparent huge pages).
const n = 512 * 1024 * 1024; const a = new Int32Array(n); for (let i = 0; i < n; i += 1024) a[i] = i;
let x = 12345, s = 0; const t = process.hrtime.bigint();
for (let i = 0; i < 2e7; i++) { x = (x * 1103515245 + 12345) >>> 0; s += a[x % n]; }
console.log(Number(process.hrtime.bigint() - t) / 2e7, 'ns/access', s);
