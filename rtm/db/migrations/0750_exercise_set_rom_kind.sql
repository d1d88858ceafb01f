-- ROM says what it measures: `rom_kind` is 'joint_angle' where a kinematic model turned the
-- segment's rotation into the joint's angle, 'segment_rotation' where it is the IMU segment's
-- rotation about the movement axis (an exercise without a model, e.g. a wrist watch during
-- shoulder exercises). `rom_plausible` is false when the set's median ROM lies outside the
-- physiological range: the number is kept, flagged. Rows stored before this migration have
-- neither (null: not known), and get both when their recording is analysed again.
alter table exercise_sets add column rom_kind text
    check (rom_kind in ('joint_angle', 'segment_rotation'));
alter table exercise_sets add column rom_plausible boolean;
