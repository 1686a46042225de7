// Runs task(0..total-1) on `width` concurrent loops: a bounded burst of requests.
export async function concurrently(total: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < total) await task(next++);
  };
  await Promise.all(Array.from({ length: width }, loop));
}
