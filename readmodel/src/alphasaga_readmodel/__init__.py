"""The read model: the saga list (``saga_summaries``) that status and list read.

- ``summaries``: its rows (``SagaSummary``), the filters of a list (``SagaFilter``), and how a
  row is made from a folded saga, or from a saga id's outbox before its saga exists;
- ``store``: every SQL statement of the read model (the table, and the reads of a saga's
  streams that front ends need);
- ``projector``: the table's only writer, a leased loop in one process at a time;
- ``reader``: readers that only read, waiting for the projector where they must.

The orchestrator runs the projector; the client API reads. Neither the client nor this
package imports the orchestrator: sagas are folded with ``alphasaga_saga``.
"""
