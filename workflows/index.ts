export { nodeWorkflow, drainSignal, statusQuery } from './node';
