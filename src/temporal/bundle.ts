import * as fs from 'node:fs';
import * as path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

/** Path of the prebuilt workflow bundle that node workers load. */
export const WORKFLOW_BUNDLE = path.resolve(__dirname, '..', '..', 'workflow-bundle.js');

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: { log: () => undefined, trace: () => undefined, debug: () => undefined, info: () => undefined, warn: console.warn, error: console.error },
  });
  fs.writeFileSync(WORKFLOW_BUNDLE, code);
  console.log(`workflow bundle written to ${path.relative(process.cwd(), WORKFLOW_BUNDLE)}`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
