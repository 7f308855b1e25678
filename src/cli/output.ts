/** Output for humans (aligned tables) and scripts (`--format json`). */
import { UsageError } from './parse.js';

export type OutputFormat = 'table' | 'json';

export function parseOutputFormat(value: string): OutputFormat {
  if (value !== 'table' && value !== 'json') throw new UsageError(`unknown --format "${value}": use table or json`);
  return value;
}

/** Prints rows as an aligned table with upper-case headers (rpk style). */
export function formatTable(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = [columns.map((c) => c.toUpperCase()), ...rows.map((r) => columns.map((c) => cellText(r[c])))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

function cellText(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${String(x)}`).join(',');
  return String(v);
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n';
}

export function emit(format: OutputFormat, value: unknown, table: () => string): void {
  process.stdout.write(format === 'json' ? formatJson(value) : table());
}
