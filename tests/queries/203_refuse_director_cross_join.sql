-- refuse: not joined chunk by chunk
SELECT COUNT(*) FROM Object o1, Object o2 WHERE o1.tract = o2.tract
