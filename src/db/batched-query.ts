// Request batching: concurrent calls that one statement can answer together share one
// database round trip. A call joins the open batch of its kind; the batch waits for a
// connection like any query (Db admission: FIFO, bounded wait) and is sealed when one is
// granted, so calls arriving meanwhile ride along. With a connection free, a call runs at
// once as a batch of one: batching costs nothing when idle and grows with the load, when
// the per-statement cost (round trip, executor start-up, the pg client's work per query,
// context switches) is what fills both cores.
import type { Ride } from './admission';
import type { Db } from './pool';

interface Pending<I, O> {
  input: I;
  resolve(output: O): void;
  reject(err: unknown): void;
}

export interface BatchStatement<I, O> {
  /** The statement's text and name for these inputs. */
  build(kind: string, inputs: I[]): { text: string; params: unknown[]; name: string };
  /** The rows of one run, one output per input in order. */
  outputs(rows: unknown[]): O[];
}

interface Batch<I, O> {
  members: Pending<I, O>[];
  /** Set while the batch waits in the admission queue: each member added takes a place there. */
  ride?: Ride;
}

export class BatchedQuery<I, O> {
  private readonly open = new Map<string, Batch<I, O>>();

  constructor(private readonly db: Db, private readonly statement: BatchStatement<I, O>, private readonly maxBatch = 32) {}

  /** The output for `input`, computed in the next run of the statements of its `kind`. */
  run(kind: string, input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      const open = this.open.get(kind);
      if (open && open.members.length < this.maxBatch) {
        try {
          open.ride?.();
        } catch (err) {
          reject(err); // the admission queue is full: this request is refused as a query would be
          return;
        }
        open.members.push({ input, resolve, reject });
        return;
      }
      const batch: Batch<I, O> = { members: [{ input, resolve, reject }] };
      this.open.set(kind, batch);
      this.db.queryWhenGranted(() => {
        // Granted: seal the batch; later calls open the next one.
        if (this.open.get(kind) === batch) this.open.delete(kind);
        return { ...this.statement.build(kind, batch.members.map((p) => p.input)), requests: batch.members.length };
      }, (ride) => {
        batch.ride = ride;
      }).then((result) => {
        const outputs = this.statement.outputs(result.rows);
        if (outputs.length !== batch.members.length) throw new Error(`a batch of ${batch.members.length} got ${outputs.length} answers`);
        batch.members.forEach((p, i) => p.resolve(outputs[i]));
      }).catch((err) => {
        if (this.open.get(kind) === batch) this.open.delete(kind);
        for (const p of batch.members) p.reject(err);
      });
    });
  }
}
