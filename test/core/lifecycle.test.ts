/**
 * The node lifecycle table: every listed transition is accepted, and every
 * transition that is not listed throws InvalidTransitionError naming both states.
 */
import { assertTransition, InvalidTransitionError, NODE_STATES, NodeState, TRANSITIONS } from '../../src/core/lifecycle';

const allowed: Array<[NodeState, NodeState]> = NODE_STATES.flatMap((from) =>
  TRANSITIONS[from].map((to): [NodeState, NodeState] => [from, to]),
);

const forbidden: Array<[NodeState, NodeState]> = [
  ['IDLE', 'ACTIVE'],
  ['IDLE', 'STOPPED'],
  ['ATTEMPT_CLAIM', 'STOPPED'],
  ['ACTIVE', 'STOPPED'],
  ['DRAINING', 'IDLE'],
  ['DRAINING', 'ACTIVE'],
  ['DRAINING', 'ATTEMPT_CLAIM'],
  ['STOPPED', 'IDLE'],
  ['STOPPED', 'ATTEMPT_CLAIM'],
  ['STOPPED', 'ACTIVE'],
  ['STOPPED', 'DRAINING'],
];

describe('node lifecycle transitions', () => {
  test('the table has the documented shape', () => {
    expect(TRANSITIONS).toEqual({
      IDLE: ['ATTEMPT_CLAIM', 'DRAINING'],
      ATTEMPT_CLAIM: ['ACTIVE', 'IDLE', 'DRAINING'],
      ACTIVE: ['ATTEMPT_CLAIM', 'IDLE', 'DRAINING'],
      DRAINING: ['STOPPED'],
      STOPPED: [],
    });
  });

  test.each(allowed)('%s -> %s is allowed', (from, to) => {
    expect(() => assertTransition(from, to)).not.toThrow();
  });

  test.each(NODE_STATES.map((s) => [s]))('staying in %s is allowed', (state) => {
    expect(() => assertTransition(state, state)).not.toThrow();
  });

  test.each(forbidden)('%s -> %s throws InvalidTransitionError naming both states', (from, to) => {
    let caught: unknown;
    try {
      assertTransition(from, to);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidTransitionError);
    const error = caught as InvalidTransitionError;
    expect(error.name).toBe('InvalidTransitionError');
    expect(error.from).toBe(from);
    expect(error.to).toBe(to);
    expect(error.message).toContain(`${from} -> ${to}`);
  });

  test('the forbidden table covers every pair the transition table leaves out', () => {
    const listed = new Set([...allowed, ...forbidden].map(([a, b]) => `${a}>${b}`));
    const missing = NODE_STATES.flatMap((from) =>
      NODE_STATES.filter((to) => to !== from && !listed.has(`${from}>${to}`)).map((to) => `${from} -> ${to}`),
    );
    expect(missing).toEqual([]);
  });

  test('the message lists the states allowed from the source, or none', () => {
    expect(() => assertTransition('DRAINING', 'IDLE')).toThrow(/allowed from DRAINING: STOPPED$/);
    expect(() => assertTransition('STOPPED', 'IDLE')).toThrow(/allowed from STOPPED: none$/);
  });
});
