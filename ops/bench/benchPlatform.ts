// AwoooP in one process: the `web` process and `worker all`, exactly as `awooop web` and
// `awooop worker all` run them, sharing one event loop. Until SIGTERM (both shut down).
import { Stage } from '../../pipeline/contracts/runJob.ts';
import { loadConfig } from '../loadConfig.ts';
import { runWeb } from '../runWeb.ts';
import { runWorker } from '../runWorker.ts';

const config = loadConfig();
const codes = await Promise.all([runWeb(config), runWorker(config, [...Stage.options])]);
process.exitCode = Math.max(...codes);
