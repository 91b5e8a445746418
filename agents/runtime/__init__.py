"""The worker's boundary with Faust and aiokafka.

Everything that relies on their internals (private attributes, a subclass of the
transport's consumer, the aiokafka producer under Faust's, patched methods) is in this
package, behind a small interface; the rest of the repository uses their public API only
(tests/unit/test_runtime_boundary.py). The internals relied on are checked against the
versions pinned in pyproject.toml by tests/unit/test_runtime_pins.py: an upgrade that
changes one fails there, naming it and the module here that relies on it.

- the batch source (:mod:`.batch_source`): the records of a topic handed to a handler a
  fetched batch at a time, acked when it returns;
- the commit barrier (:mod:`.commit_barrier`): hooks run before every producer flush, hence
  before every offset commit, and table changelogs coalesced until then;
- partition offsets (:mod:`.offsets`): committed offset, position and end offset of a
  partition, for lag and backlog.
"""

from .batch_source import BatchHandler
from .batch_source import install as install_batch_source
from .commit_barrier import CoalescedChangelog, CommitBarrier, owner
from .offsets import PartitionOffsets

__all__ = ["BatchHandler", "CoalescedChangelog", "CommitBarrier", "PartitionOffsets",
           "install_batch_source", "owner"]
