import { enqueueOutbound } from '../../db/outboundMessages.ts';
import { transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { formatForChannel } from '../sanitize/formatForChannel.ts';
import { redactPii } from '../sanitize/redactPii.ts';
import { redactSecrets } from '../sanitize/redactSecrets.ts';
import { validateOutput } from '../sanitize/validateOutput.ts';
import { failRun } from '../runs/failRun.ts';
import { loadPinnedContracts } from '../runs/loadPinnedContracts.ts';
import { loadRun } from '../runs/loadRun.ts';
import { alreadyDone } from './alreadyDone.ts';
import type { StageContext } from '../StageContext.ts';
import type { StageOutcome } from './StageOutcome.ts';

/**
 * sanitize: validates the output against the agent's output schema (fail closed: the run fails
 * with `OUTPUT_SCHEMA_INVALID` and nothing is delivered), redacts credentials and the policy's
 * PII classes, escapes for the channel's format and splits into its size limit, writing one
 * ledger row per chunk (`suppressed` when the run may not speak).
 * Harmless twice: it acts only on an `EXECUTED` run, the ledger's (run, kind, chunk) key
 * admits each chunk once, and the transition is conditional on the state.
 */
export async function sanitize(ctx: StageContext, job: RunJob): Promise<StageOutcome> {
  const startedAt = ctx.now();
  const known = await ctx.secrets.knownValues(job.projectId);
  return withProject(ctx.pool, job.projectId, async (tx) => {
    const run = await loadRun(tx, job);
    if (run.state !== 'EXECUTED') return alreadyDone(run);
    const contracts = await loadPinnedContracts(ctx, tx, run);
    const output = (run.output ?? {}) as { text?: unknown };
    const raw = typeof output.text === 'string' ? output.text : '';

    const schemaRef = contracts.agent.outputSchema;
    const schema = schemaRef
      ? (JSON.parse(
          await ctx.contracts.artifactText(tx, { projectId: run.projectId, ...schemaRef }),
        ) as unknown)
      : undefined;
    const checked = validateOutput(raw, schema);
    if (!checked.ok) {
      await failRun(
        ctx,
        tx,
        run,
        {
          code: 'OUTPUT_SCHEMA_INVALID',
          message: 'the answer did not match the agent output schema',
          detail: { issues: checked.issues },
        },
        { stage: 'sanitize', startedAt, channel: contracts.channel, from: 'EXECUTED' },
      );
      return { next: 'deliver', notice: true };
    }

    const secrets = redactSecrets(checked.text, known);
    const pii = redactPii(secrets.text, contracts.policy.privacy.redactPii);
    // A type with no registered plugin (a revision stored before apply refused it) is written
    // as plain text; deliver then refuses it with `CHANNEL_NOT_SUPPORTED`, as it always did.
    const plugin = ctx.channels.find(contracts.channel.type);
    const format = plugin?.dialect(contracts.channel) ?? 'plain';
    const limit =
      contracts.channel.formatting.maxChunkChars ?? plugin?.capabilities.maxMessageChars ?? null;
    const chunks = plugin
      ? plugin.format(pii.text, contracts.channel, limit)
      : formatForChannel(pii.text, format, limit);
    // The transition first: if a concurrent failRun won, no answer rows are written at all.
    const moved = await transitionRun(tx, {
      runId: run.runId,
      from: 'EXECUTED',
      to: 'SANITIZED',
      stage: 'sanitize',
      actor: ctx.actor,
      startedAt,
      changes: {
        output: { ...output, text: pii.text, redactions: secrets.redactions + pii.redactions },
      },
      detail: {
        chunks: chunks.length,
        redactions: secrets.redactions + pii.redactions,
        suppressed: run.live !== true,
      },
    });
    if (!moved) return { next: null };
    await enqueueOutbound(tx, run, 'reply', chunks, { format, suppressed: run.live !== true });
    return { next: 'deliver' };
  });
}
