//! Every map of the program is pinned, and nothing else is: the object's
//! maps (read from the embedded ELF), the names both sides agree on
//! (`filter_common::maps::ALL`) and the files a real attach leaves on a
//! lab's bpffs are compared. A map added to the program but not pinned
//! would lose its contents on every upgrade; this test is where that shows.
use std::collections::BTreeSet;

use filter_kernel::{
    pins::{EGRESS_LINK_PIN, INFO_PIN, LINK_PIN},
    program::object_map_names,
};
use sipwall_tests::netns::TestLab;

#[test]
fn the_shared_map_names_are_the_objects() {
    let object: BTreeSet<String> = object_map_names().unwrap().into_iter().collect();
    for name in filter_common::maps::ALL {
        assert!(
            object.contains(name),
            "filter_common::maps::ALL names {name}, which the XDP object does not have: {object:?}"
        );
    }
}

#[test]
fn attach_pins_every_map_of_the_object_and_nothing_else() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let dir = lab.pin_dir(sipwall_tests::netns::PBX_IFACE);
    let pinned: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut expected: BTreeSet<String> = object_map_names().unwrap().into_iter().collect();
    expected.insert(INFO_PIN.to_string());
    expected.insert(LINK_PIN.to_string());
    expected.insert(EGRESS_LINK_PIN.to_string());
    let unpinned: Vec<_> = expected.difference(&pinned).collect();
    let extra: Vec<_> = pinned.difference(&expected).collect();
    assert!(
        unpinned.is_empty() && extra.is_empty(),
        "pins in {} differ from the object's maps: not pinned {unpinned:?}, pinned but not the object's {extra:?}",
        dir.display()
    );
}
