-- Reserved for issue #32 part A (the history bench's indexes and partitioning), written on
-- another branch: this placeholder only keeps the numbers without a gap on this one. At the
-- merge, part A's 0010 replaces it.
SELECT 1;
