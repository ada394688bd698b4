"""Projection geometry and rendering: detector frames, mirror symmetry, analytic chords."""

from __future__ import annotations

import numpy as np
import pytest

from angiosynth.phantom import anatomy
from angiosynth.phantom.anatomy import Ellipsoid, Patient
from angiosynth.phantom.geometry import Detector, view_for_angles
from angiosynth.phantom.render import ellipsoid_chords, gaussian_blur, project_tree
from angiosynth.phantom.vessels import TreeBuilder, VesselTree

DETECTOR = Detector(96, 230.0 / 96)


@pytest.fixture(scope="module")
def patient_and_tree() -> tuple[Patient, VesselTree]:
    """A left anterior-circulation tree of a seeded patient."""
    rng = np.random.default_rng(5)
    patient = Patient.sample(rng)
    return patient, anatomy.grow_anterior(1, patient, rng)


def _project(tree: VesselTree, primary: float, secondary: float, det: Detector = DETECTOR):
    """Noise-free line integral of a unit concentration through every segment."""
    view = view_for_angles(primary, secondary)
    return project_tree(tree, det, view).integrate(np.ones(len(tree.parent)))


def _cylinder(start: np.ndarray, stop: np.ndarray, radius: float, n_segments: int) -> VesselTree:
    """A straight cylinder of constant radius made of n_segments equal segments."""
    b = TreeBuilder()
    prev = -1
    for t in np.linspace(0.0, 1.0, n_segments + 1):
        prev = b.add_node(start + t * (stop - start), radius, prev)
    return b.build()


def test_view_axes_are_orthonormal_and_right_handed() -> None:
    rng = np.random.default_rng(0)
    for primary, secondary in zip(
        rng.uniform(-180, 180, 25), rng.uniform(-60, 60, 25), strict=True
    ):
        v = view_for_angles(primary, secondary)
        frame = np.stack([v.beam, v.right, v.down])
        np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)
        # A proper rotation: images are never mirrored by the choice of axes.
        np.testing.assert_allclose(np.cross(v.down, v.right), v.beam, atol=1e-12)


def test_canonical_views_follow_dicom_conventions() -> None:
    pa = view_for_angles(0, 0)
    lateral = view_for_angles(-90, 0)
    cranial = view_for_angles(0, 30)

    np.testing.assert_allclose(pa.beam, [0, -1, 0], atol=1e-12)  # posterior -> anterior
    np.testing.assert_allclose(pa.right, [1, 0, 0], atol=1e-12)  # columns: patient's left
    np.testing.assert_allclose(pa.down, [0, 0, -1], atol=1e-12)  # rows: towards the feet
    np.testing.assert_allclose(lateral.beam, [-1, 0, 0], atol=1e-12)  # detector at the right
    np.testing.assert_allclose(lateral.right, [0, -1, 0], atol=1e-12)  # columns: anterior
    assert cranial.beam[2] > 0  # a cranial tilt aims the beam towards the head


def test_to_pixels_maps_the_isocentre_to_the_image_centre() -> None:
    det = Detector(65, 0.5)
    view = view_for_angles(0, 0)
    points = np.array([[0.0, 0, 0], [10, 0, 0], [0, 0, 10], [0, 40, 0]])

    rc = det.to_pixels(points, view)

    np.testing.assert_allclose(rc[0], [32, 32])
    np.testing.assert_allclose(rc[1], [32, 52])  # 10 mm to the patient's left: +20 columns
    np.testing.assert_allclose(rc[2], [12, 32])  # 10 mm superior: 20 rows up
    np.testing.assert_allclose(rc[3], [32, 32])  # along the beam: no displacement
    grid = det.pixel_grid(view)
    rows = det.to_pixels(grid.reshape(-1, 3), view)[:, 0].reshape(65, 65)
    np.testing.assert_allclose(rows, np.repeat(np.arange(65.0)[:, None], 65, axis=1), atol=1e-9)


def test_ap_and_lateral_projections_differ(patient_and_tree) -> None:
    _, tree = patient_and_tree

    ap = _project(tree, 0, 0)
    lateral = _project(tree, -90, 0)

    assert ap.sum() > 0 and lateral.sum() > 0
    assert np.abs(ap - lateral).sum() > 0.5 * ap.sum()
    assert np.corrcoef(ap.ravel(), lateral.ravel())[0, 1] < 0.5


def test_left_tree_appears_on_the_image_left_of_the_patient(patient_and_tree) -> None:
    _, tree = patient_and_tree
    centre = (DETECTOR.size - 1) / 2
    index = np.arange(DETECTOR.size)

    def centroid(image: np.ndarray, axis: int) -> float:
        return float((image.sum(axis=axis) * index).sum() / image.sum())

    ap = _project(tree, 0, 0)
    lateral = _project(tree, -90, 0)

    # PA view: columns increase towards the patient's left, where a left ICA tree lies.
    assert centroid(ap, axis=0) > centre + 5
    # Rows run towards the feet in both views (secondary angle 0): the cervical ICA (the tree's
    # root) projects below the intracranial branches.
    root_row = DETECTOR.to_pixels(tree.points[:1], view_for_angles(0, 0))[0, 0]
    assert root_row > centroid(ap, axis=1) + 10
    assert root_row > centroid(lateral, axis=1) + 10


@pytest.mark.parametrize(
    ("primary", "secondary"), [(0, 0), (-90, 0), (32, 0), (20, 15), (-75, -25)]
)
def test_opposite_view_is_an_exact_mirror(
    patient_and_tree, primary: float, secondary: float
) -> None:
    patient, tree = patient_and_tree
    head = anatomy.head_ellipsoids(patient)
    # Parallel projection: rotating the primary angle by 180 degrees (and negating the tilt, which
    # keeps the rows pointing the same way) reverses the beam and flips the columns.
    front, back = view_for_angles(primary, secondary), view_for_angles(primary + 180, -secondary)

    vessels = _project(tree, primary, secondary)
    vessels_back = _project(tree, primary + 180, -secondary)
    bone = ellipsoid_chords(head, DETECTOR, front)
    bone_back = ellipsoid_chords(head, DETECTOR, back)

    assert vessels.max() > 1 and bone.max() > 50
    np.testing.assert_allclose(vessels, np.fliplr(vessels_back), atol=1e-4 * vessels.max())
    np.testing.assert_allclose(bone, np.fliplr(bone_back), atol=1e-4 * bone.max())


def test_cylinder_perpendicular_to_beam_has_analytic_chords() -> None:
    det = Detector(101, 0.25)  # 25 mm field, pixel centre 50 on the isocentre
    radius, length = 3.0, 20.0
    tree = _cylinder(np.array([-length / 2, 0, 0]), np.array([length / 2, 0, 0]), radius, 8)

    image = project_tree(tree, det, view_for_angles(0, 0)).integrate(np.ones(len(tree.parent)))

    # The axis runs along row 50; chord = 2 sqrt(r^2 - d^2) across it, away from the ends.
    middle = slice(30, 71)
    np.testing.assert_allclose(image[50, middle], 2 * radius, rtol=1e-5)
    for k in (4, 8, 11):
        d = k * det.spacing_mm
        np.testing.assert_allclose(image[50 + k, middle], 2 * np.sqrt(radius**2 - d**2), rtol=1e-5)
        np.testing.assert_allclose(image[50 - k, middle], 2 * np.sqrt(radius**2 - d**2), rtol=1e-5)
    assert np.all(image[50 + 12 :, :] == 0) and np.all(image[: 50 - 12, :] == 0)
    # Summing line integrals over the detector recovers the volume.
    volume = np.pi * radius**2 * length
    assert image.sum() * det.spacing_mm**2 == pytest.approx(volume, rel=0.03)


def test_tilted_cylinder_chord_scales_with_one_over_sine() -> None:
    det = Detector(121, 0.25)
    radius, length, theta = 2.0, 24.0, np.deg2rad(60.0)  # angle between axis and beam
    # The PA beam runs along -y; the axis is tilted in the y-z plane, projecting onto the column
    # through the centre.
    axis = np.array([0.0, np.cos(theta), np.sin(theta)])
    tree = _cylinder(-axis * length / 2, axis * length / 2, radius, 6)

    image = project_tree(tree, det, view_for_angles(0, 0)).integrate(np.ones(len(tree.parent)))

    np.testing.assert_allclose(image[45:76, 60], 2 * radius / np.sin(theta), rtol=1e-4)
    volume = np.pi * radius**2 * length
    assert image.sum() * det.spacing_mm**2 == pytest.approx(volume, rel=0.03)


def test_integrate_weights_each_segment() -> None:
    det = Detector(101, 0.25)
    tree = _cylinder(np.array([-10.0, 0, 0]), np.array([10.0, 0, 0]), 2.0, 2)
    proj = project_tree(tree, det, view_for_angles(0, 0))
    weights = np.zeros(len(tree.parent))
    weights[2] = 0.5  # the segment ending at node 2: the half with x > 0 (columns > 50)

    image = proj.integrate(weights)

    assert image[50, 30:49].max() == 0
    np.testing.assert_allclose(image[50, 52:69], 0.5 * 2 * 2.0, rtol=1e-5)


def test_sphere_chords_match_the_analytic_formula() -> None:
    det = Detector(81, 0.5)
    radius = 12.0
    centre = np.array([3.0, -4.0, 5.0])
    sphere = Ellipsoid(centre, np.full(3, radius), np.eye(3), 1.0)
    view = view_for_angles(27.0, -13.0)

    chords = ellipsoid_chords([sphere], det, view)

    grid = det.pixel_grid(view)  # pixel centres in the plane through the isocentre
    foot = centre - (centre @ view.beam) * view.beam
    d2 = ((grid - foot) ** 2).sum(axis=-1)
    expected = 2 * np.sqrt(np.clip(radius**2 - d2, 0, None))
    np.testing.assert_allclose(chords, expected, atol=1e-3)  # float32 arithmetic is allowed
    assert chords.max() == pytest.approx(2 * radius, rel=1e-3)


def test_ellipsoid_rotation_and_density() -> None:
    det = Detector(81, 0.5)
    view = view_for_angles(0, 0)  # beam along -y
    axes = np.array([10.0, 20.0, 5.0])
    quarter_turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # ellipsoid x-axis -> patient y

    plain = ellipsoid_chords([Ellipsoid(np.zeros(3), axes, np.eye(3), 1.0)], det, view)
    turned = ellipsoid_chords([Ellipsoid(np.zeros(3), axes, quarter_turn, 0.5)], det, view)
    shell = ellipsoid_chords(
        [
            Ellipsoid(np.zeros(3), axes, np.eye(3), 1.0),
            Ellipsoid(np.zeros(3), axes, np.eye(3), -1.0),
        ],
        det,
        view,
    )

    assert plain[40, 40] == pytest.approx(2 * 20.0)  # the semi-axis along the beam
    assert turned[40, 40] == pytest.approx(0.5 * 2 * 10.0)
    np.testing.assert_allclose(shell, 0.0, atol=1e-9)


def test_gaussian_blur_conserves_mass_and_has_the_right_width() -> None:
    image = np.zeros((61, 61))
    image[30, 30] = 1.0
    sigma = 2.5

    blurred = gaussian_blur(image, sigma)

    assert blurred.sum() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(blurred, blurred.T, atol=1e-7)
    offsets = np.arange(61) - 30
    variance = (blurred.sum(axis=0) * offsets**2).sum()
    assert np.sqrt(variance) == pytest.approx(sigma, rel=0.02)
    assert gaussian_blur(image, 0.0) is image
    stack = gaussian_blur(np.stack([image, 2 * image]), sigma)
    np.testing.assert_allclose(stack[1], 2 * blurred, rtol=1e-6)
