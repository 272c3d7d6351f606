"""The saga's domain, shared by its one writer (the orchestrator) and its readers (the read
model, the client API): the aggregate (``aggregate``), its events as rows and back
(``mapper``), saga stream ids (``streams``), the workflow definitions a saga runs on
(``workflow``), and what must hold of a saga's log (``invariants``). No service runtime and
no SQL here."""
