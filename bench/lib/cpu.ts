/**
 * CPU time of processes from /proc (Linux): user + system seconds of a PID and its direct
 * children (nginx's master forks its worker). Lets a benchmark say where the cycles went (client,
 * proxy, registry), which matters more than wall time on a 2-core machine shared by all three.
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function ownSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND; // utime, stime
  } catch {
    return 0;
  }
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds used so far by `pid` and its direct children. */
export function cpuSeconds(pid: number): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  return [pid, ...children(pid)].reduce((s, p) => s + ownSeconds(p), 0);
}

/** Runs `fn` and returns its result with the CPU seconds each named PID spent meanwhile. */
export async function withCpu<R>(
  pids: Record<string, number>,
  fn: () => Promise<R>,
): Promise<{ result: R; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  const result = await fn();
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p) - (before[k] ?? 0)]));
  return { result, cpu };
}

/**
 * CPU nanoseconds used so far by every thread of `pid` (the first field of each
 * /proc/<pid>/task/<tid>/schedstat: time on a CPU, in ns). Unlike /proc/<pid>/stat's 10 ms clock
 * ticks, fine enough for one request. Threads that ended meanwhile are not counted.
 */
export function cpuNanos(pid: number): number {
  let sum = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tids) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // the thread ended
    }
  }
  return sum;
}
