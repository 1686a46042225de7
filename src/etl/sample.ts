// Placeholder until the generator and ETL land (issue 3).
export async function seedSampleIfEmpty(_url: string, _scale: number, _log: (line: string) => void): Promise<void> {}
